"""streams/runtime/faust_fix.py: the version guard and what `apply()` installs (no broker).

tests/integration/test_restart_race.py shows on the real broker that the corrections close the race.
"""

from __future__ import annotations

import pytest
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer

from streams.runtime import faust_fix


@pytest.fixture
def pristine(monkeypatch):
    """Stand-ins for the two Faust methods and an unapplied faust_fix; all restored after the test.

    Stand-ins rather than Faust's own methods, so the test holds even if an earlier test in the
    session applied the corrections (monkeypatch puts back whatever was there).
    """

    async def upstream_on_recovery_completed(self, generation_id: int = 0) -> None: ...

    async def upstream_wait_next_records(self, timeout: float): ...

    async def upstream_resume_streams(self, generation_id: int = 0) -> None: ...

    monkeypatch.setattr(Recovery, "_resume_streams", upstream_resume_streams)
    monkeypatch.setattr(Recovery, "on_recovery_completed", upstream_on_recovery_completed)
    monkeypatch.setattr(Consumer, "_wait_next_records", upstream_wait_next_records)
    monkeypatch.setattr(Consumer, "_new_offset", Consumer._new_offset)
    monkeypatch.setattr(faust_fix, "_applied", False)
    return upstream_on_recovery_completed, upstream_wait_next_records


def test_faust_has_the_methods_the_corrections_replace():
    """Both exist upstream with the signatures the replacements keep."""
    import inspect

    assert list(inspect.signature(Recovery.on_recovery_completed).parameters) == ["self", "generation_id"]
    assert list(inspect.signature(Recovery._resume_streams).parameters) == ["self", "generation_id"]
    assert list(inspect.signature(Consumer._wait_next_records).parameters) == ["self", "timeout"]
    assert list(inspect.signature(faust_fix._on_recovery_completed).parameters) == ["self", "generation_id"]
    assert list(inspect.signature(faust_fix._wait_next_records).parameters) == ["self", "timeout"]


def test_check_version_passes_on_the_installed_release():
    assert faust_fix.installed_version() == faust_fix.FAUST_VERSION_EXPECTED
    faust_fix.check_version()


@pytest.mark.parametrize("other", ["0.15.2", "0.15.4", "0.16.0", "1.0.0"])
def test_check_version_refuses_any_other_release(monkeypatch, other):
    monkeypatch.setattr(faust_fix, "installed_version", lambda: other)
    with pytest.raises(faust_fix.FaustVersionError, match=other):
        faust_fix.check_version()


def test_apply_replaces_both_methods(pristine):
    upstream_recovery, upstream_wait = pristine
    assert not faust_fix.applied()

    faust_fix.apply()

    assert Recovery.on_recovery_completed is faust_fix._on_recovery_completed
    assert Recovery._resume_streams is faust_fix._resume_streams
    assert Consumer._wait_next_records is faust_fix._wait_next_records
    assert Consumer._new_offset is faust_fix._new_offset
    assert Recovery.on_recovery_completed is not upstream_recovery
    assert Consumer._wait_next_records is not upstream_wait
    assert faust_fix.applied()
    faust_fix.apply()  # idempotent
    assert Recovery.on_recovery_completed is faust_fix._on_recovery_completed


def test_apply_on_another_release_installs_nothing(monkeypatch, pristine):
    upstream_recovery, upstream_wait = pristine
    monkeypatch.setattr(faust_fix, "installed_version", lambda: "0.16.0")
    with pytest.raises(faust_fix.FaustVersionError):
        faust_fix.apply()
    assert Recovery.on_recovery_completed is upstream_recovery
    assert Consumer._wait_next_records is upstream_wait
    assert not faust_fix.applied()


class _Offsets:
    """The attributes `_new_offset` reads, for one topic-partition."""

    def __init__(self, committed, acked):
        from collections import defaultdict

        from intervaltree import IntervalTree

        self._committed_offset = defaultdict(lambda: None, {"tp": committed})
        self._acked = {"tp": list(acked)}
        self._acked_index = {"tp": set(acked)}
        self._gap = defaultdict(IntervalTree)


@pytest.mark.parametrize("committed, acked, upstream, corrected", [
    (929, [929, 930, 931], 932, 932),     # contiguous: both commit through 931
    (929, [930, 931], 932, None),         # the message at 929 is held: upstream commits past it
    (929, [931, 932], None, None),        # a gap of two: both wait
    (None, [1, 2], 3, None),              # nothing committed yet, offset 0 delivered and held
    (None, [0, 1], 2, 2),
])
def test_nothing_is_committed_past_an_unacked_message_at_the_committed_offset(monkeypatch, committed, acked,
                                                                              upstream, corrected):
    from faust.transport.consumer import Consumer as Upstream

    monkeypatch.setitem(faust_fix.FIRST_DELIVERED, "tp", 0)
    original = Upstream.__dict__["_new_offset"] if not faust_fix.applied() else None
    if original is not None:
        assert original(_Offsets(committed, acked), "tp") == upstream
    assert faust_fix._new_offset(_Offsets(committed, acked), "tp") == corrected
