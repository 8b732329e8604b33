"""Changelog records with their outbox, and which standing outboxes a restore sends again (no broker)."""

from __future__ import annotations

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
