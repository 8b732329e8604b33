"""The review queue as cases on a real worker: filters and sorts, assignment, a case in words, four eyes
with a note, in the CLI and the HTTP API alike."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.integration.conftest import Deployment
from tests.integration.test_operations import NAMED, SAMPLE, TOKENS, call, current


def sample_with_tokens(tmp_path):
    """A worker with role tokens and named reviewer tokens, the sample day decided and projected."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    tokens = tmp_path / "tokens"
    tokens.write_text("".join(f"{role} {token}\n" for role, token in TOKENS.items())
                      + "".join(f"reviewer {token} {name}\n" for name, token in NAMED.items()))
    deployment = Deployment(tmp_path, REMEDY_HTTP_TOKENS_FILE=str(tokens))
    deployment.start_worker()
    deployment.cli("publish", str(SAMPLE))
    deployment.env["REMEDY_HTTP_TOKEN"] = TOKENS["finance"]
    deployment.cli("wait", "--file", str(SAMPLE), "--timeout", "240")
    deployment.cli("wait", "--decisions", "0", "--timeout", "120")  # reviews look decisions up in the projection
    yield deployment
    deployment.stop_worker()


@pytest.fixture
def team(tmp_path):
    """A worker with tokens, the sample day decided."""
    yield from sample_with_tokens(tmp_path)


def api(deployment, path, token, method="GET", body=None):
    status, answer = call(deployment, path, method=method, body=body, token=token)
    return status, json.loads(answer)


def test_the_queue_filters_sorts_assigns_and_explains(team):
    waiting = [d for d in current(team.decisions()).values() if d["outcome"] == "ESCALATED"]
    listed = json.loads(team.cli("review", "list", "--json").stdout)
    assert sorted(row["request_id"] for row in listed) == sorted(d["request_id"] for d in waiting) and listed
    by_amount = json.loads(team.cli("review", "list", "--sort", "amount", "--json").stdout)
    assert [row["requested_cents"] for row in by_amount] == sorted((r["requested_cents"] for r in listed), reverse=True)

    case = next(d for d in waiting if d["requested_by"] in NAMED)
    asker = case["requested_by"]
    mine = json.loads(team.cli("review", "list", "--associate", asker, "--json").stdout)
    assert mine and {row["requested_by"] for row in mine} == {asker}
    kind = json.loads(team.cli("review", "list", "--kind", case["kind"], "--reason", case["reason_codes"][0],
                                "--json").stdout)
    assert case["request_id"] in {row["request_id"] for row in kind}
    assert all(row["kind"] == case["kind"] and case["reason_codes"][0] in row["reason_codes"] for row in kind)
    assert json.loads(team.cli("review", "list", "--older-than-hours", "1000000", "--json").stdout) == []

    status, answer = api(team, f"/v1/review-cases?associate={quote(asker)}", TOKENS["fraud"])
    assert status == 200 and [row["request_id"] for row in answer["cases"]] == [row["request_id"] for row in mine]
    assert api(team, "/v1/review-cases?sort=size", TOKENS["fraud"])[0] == 400
    assert api(team, "/v1/review-cases?colour=red", TOKENS["fraud"])[1]["error"].startswith("query parameter 'colour'")
    assert api(team, "/v1/review-cases", TOKENS["finance"])[0] == 403

    # Assignment, through the worker: the assigner is the token's person.
    team.env["REMEDY_HTTP_TOKEN"] = NAMED["assoc-lead"]
    assigned = team.cli("review", "assign", case["request_id"], "--to", "assoc-ben")
    assert f"assigned {case['request_id']} to assoc-ben (by assoc-lead)" in assigned.stdout
    theirs = json.loads(team.cli("review", "list", "--assigned-to", "assoc-ben", "--json").stdout)
    assert [row["request_id"] for row in theirs] == [case["request_id"]]
    status, detail = api(team, f"/v1/review-cases/{quote(case['request_id'])}", NAMED["assoc-ben"])
    assert status == 200 and detail["assigned_to"] == "assoc-ben"
    assert any(line.startswith("policy version: ") for line in detail["inputs_in_words"])
    assert any(line.startswith("trust tier: ") for line in detail["inputs_in_words"])
    assert set(detail["history"]) == {"customer", "household", "associate"}
    assert api(team, "/v1/review-cases/no-such-request", NAMED["assoc-ben"])[0] == 404
    assert api(team, "/v1/review-assignments", NAMED["assoc-ben"], "POST", {"request_id": case["request_id"]})[0] == 400
    shown = team.cli("review", "show", case["request_id"]).stdout
    assert "what the decision saw:" in shown and "assigned to assoc-ben" in shown and "policy version:" in shown


def test_four_eyes_and_a_note_in_the_cli_and_the_api(team):
    case = next(d for d in current(team.decisions()).values() if d["outcome"] == "ESCALATED" and d["requested_by"] in NAMED)
    asker, request_id = case["requested_by"], case["request_id"]

    team.env["REMEDY_HTTP_TOKEN"] = NAMED[asker]
    for action in ("approve", "deny"):
        own = team.cli("review", action, request_id, "--note", "looks fine to me", check=False)
        assert own.returncode == 1 and "SELF_APPROVAL" in own.stderr and f"may not {action} it (four eyes)" in own.stderr
    status, answer = api(team, "/v1/reviews", NAMED[asker], "POST",
                         {"request_id": request_id, "verdict": "DENY", "note": "mine"})
    assert status == 403 and "SELF_APPROVAL" in answer["error"]

    status, answer = api(team, "/v1/reviews", NAMED["assoc-lead"], "POST", {"request_id": request_id, "verdict": "DENY"})
    assert status == 400 and answer["error"] == "field 'note': a note saying why is required for every review"
    team.env["REMEDY_HTTP_TOKEN"] = NAMED["assoc-lead"]
    without = team.cli("review", "deny", request_id, check=False)
    assert without.returncode == 1 and "a note saying why is required" in without.stderr
    denied = team.cli("review", "deny", request_id, "--note", "third claim this week")
    assert f"denied {request_id} as assoc-lead" in denied.stdout
    team.wait_for("the review's decision", lambda: current(team.decisions())[request_id]["outcome"] == "DENIED")
    assert current(team.decisions())[request_id]["note"] == "third claim this week"


def test_the_worker_s_queue_follows_the_topic_as_a_whole_read_does(team):
    """The worker serves the queue from an index of the decision topic that reads only what was
    added since its last call: its cases, case pages and rankings equal what the CLI computes from
    a whole read of the topic, before and after a review supersedes a case."""
    def same_everywhere() -> list[dict]:
        listed = json.loads(team.cli("review", "list", "--json").stdout)
        status, answer = api(team, "/v1/review-cases", TOKENS["fraud"])
        assert status == 200
        assert [{**row, "age_hours": 0} for row in answer["cases"]] == [{**row, "age_hours": 0} for row in listed]
        return listed

    before = same_everywhere()
    case = next(row for row in before if row["requested_by"] in NAMED)
    detail = json.loads(team.cli("review", "show", case["request_id"], "--json").stdout)
    status, answer = api(team, f"/v1/review-cases/{quote(case['request_id'])}", TOKENS["fraud"])
    assert status == 200 and {**answer, "age_hours": 0} == {**detail, "age_hours": 0}
    reviewer = next(name for name in NAMED if name != case["requested_by"])
    team.env["REMEDY_HTTP_TOKEN"] = NAMED[reviewer]
    team.cli("review", "approve", case["request_id"], "--note", "the parcel was photographed on the porch")
    team.wait_for("the review's decision",
                  lambda: current(team.decisions())[case["request_id"]]["outcome"] != "ESCALATED")
    after = same_everywhere()
    assert case["request_id"] not in {row["request_id"] for row in after} and len(after) == len(before) - 1
