"""Changelog records with their outbox, and which standing outboxes a restore sends again (no broker)."""

from __future__ import annotations

import asyncio
import json

import pytest

from streams.runtime.agents import AgentShell
from streams.runtime.state import OutboxEntry, Standing, changelog_value, split_changelog_value

STATE = b'{"orders":{},"pending":[]}'
OUTBOX = [OutboxEntry("p.remedy-decisions.v1", b"c1", b"\xc3\x01bytes"), OutboxEntry("p.limit-checks.v1", None, b"x")]


def test_a_state_without_outbox_is_the_plain_json_as_before():
    assert changelog_value(STATE, []) == STATE
    assert split_changelog_value(STATE) == (STATE, [], {})


def test_a_state_with_its_outbox_and_offsets_round_trips_byte_for_byte():
    value = changelog_value(STATE, OUTBOX, {"p.orders.v1": 12, "p.remedy-requests.v1": 4})
    state, outbox, through = split_changelog_value(value)
    assert json.loads(state) == json.loads(STATE)
    assert outbox == OUTBOX and through == {"p.orders.v1": 12, "p.remedy-requests.v1": 4}


@pytest.mark.parametrize("committed_orders, resent", [(11, True), (12, False), (13, False), (None, True)])
def test_an_outbox_is_sent_again_unless_its_whole_batch_was_committed(committed_orders, resent):
    shell = AgentShell("decide", step=None, state=None, producer=lambda: None)
    committed = {("p.orders.v1", 2): committed_orders, ("p.remedy-requests.v1", 2): 4}
    shell.committed = lambda topic, partition: committed.get((topic, partition))
    standing = Standing(2, {"p.orders.v1": 12, "p.remedy-requests.v1": 4}, OUTBOX)
    assert shell._committed(standing) is not resent


def test_an_outbox_written_without_offsets_is_always_sent_again():
    shell = AgentShell("decide", step=None, state=None, producer=lambda: None)
    shell.committed = lambda topic, partition: 10**9
    assert shell._committed(Standing(0, {}, OUTBOX)) is False


class _Record:
    def __init__(self, offset: int, key: bytes, value: bytes):
        self.offset, self.key, self.value = offset, key, value


class _Changelog:
    """A changelog of one partition, read by a fake restore consumer that can be held mid-read."""

    def __init__(self):
        self.records: list[_Record] = []
        self.gate: asyncio.Event | None = None  # set: reads go on; unset: the next read waits
        self.reading = asyncio.Event()

    def write(self, key: bytes, value: bytes) -> None:
        self.records.append(_Record(len(self.records), key, value))

    def consumer(self, *args, **kwargs):
        changelog = self

        class Consumer:
            position_of: dict = {}

            async def start(self):
                pass

            async def stop(self):
                pass

            def assign(self, tps):
                self.tps = tps

            async def seek_to_beginning(self, *tps):
                self.position_of = {tp: 0 for tp in tps}

            async def end_offsets(self, tps):
                return {tp: len(changelog.records) for tp in tps}

            async def position(self, tp):
                return self.position_of[tp]

            async def getmany(self, timeout_ms, max_records):
                changelog.reading.set()
                if changelog.gate is not None:
                    await changelog.gate.wait()
                fetched = {tp: changelog.records[self.position_of[tp]:] for tp in self.tps}
                self.position_of = {tp: len(changelog.records) for tp in self.tps}
                return fetched

        return Consumer()


def test_a_partition_revoked_while_its_state_is_restored_is_read_again_when_it_comes_back(monkeypatch):
    # A worker's tick restores a partition it was just given (no input event is in flight, so
    # Faust's revocation does not wait for it); a rebalance takes the partition away during that
    # read, another worker judges on it, and it comes back. The first read must not stand as the
    # partition's state: the worker would judge on it without the other worker's checks.
    from streams.runtime import state as state_module

    changelog = _Changelog()
    monkeypatch.setattr(state_module, "AIOKafkaConsumer", changelog.consumer)
    monkeypatch.setattr(state_module, "aiokafka_options", lambda kafka: {})
    changelog.write(b"associate:a1", b'{"judged":1}')

    async def scenario():
        state = state_module.PartitionState("p.scope-changelog", kafka=None)
        shell = AgentShell("limits", step=None, state=state, producer=lambda: None)
        restored = []
        shell.on_restored = lambda partitions, indexed: restored.append(list(partitions))
        changelog.gate = asyncio.Event()
        first = asyncio.ensure_future(shell.ensure_owned([3]))
        await changelog.reading.wait()
        shell.revoked({3})  # the rebalance, while the read is under way
        changelog.write(b"associate:a1", b'{"judged":2}')  # the next owner judges and writes
        changelog.gate.set()
        await first
        owned_after_revocation = state.owned(3)
        await shell.ensure_owned([3])  # given back
        return owned_after_revocation, state.get(3, b"associate:a1"), restored

    owned_after_revocation, value, restored = asyncio.run(scenario())
    assert value == b'{"judged":2}'
    assert owned_after_revocation is False
    assert restored == [[3]]
