"""Issue 12's quality targets on the simulator's default profile, decided in process (no broker):
honest customers' requests granted without friction >= 99%; abusers' excess claims stopped (not
auto-granted) >= 95% by count and by cents. The adversarial profile is the holdout: its figures
are reported (README, `remedy-ledger report quality --in-process --profile adversarial`), not
asserted, and the defaults are never tuned on it.
"""

from __future__ import annotations

import pytest

from streams.measure import in_process, quality
from streams.measure.simulate import HONEST_GROUPS, SCHEMES, WorkloadConfig

# The workload the README's figures come from.
DEFAULT_WORKLOAD = WorkloadConfig(customers=20_000, days=60, seed=11)
# What this branch reaches on DEFAULT_WORKLOAD (README "Decision quality"); a change that stops
# fewer excess claims than this fails here, whatever the target says.
# 85.1% by count, 86.1% by cents since a new account's never-received claim is counted at its
# address (one alone is trusted: the porch-theft story) instead of escalated on sight (87.6%), and
# an associate's early reshipment of a lost parcel is their judgement (86.3% when it escalated);
# 87.6% / 88.2% since WATCH starts at a quarter of recent orders claimed on, not half.
EXCESS_STOPPED_FLOOR = 0.875


@pytest.fixture(scope="module")
def report():
    return in_process.report(DEFAULT_WORKLOAD)


def test_honest_customers_are_granted_without_friction_on_the_default_profile(report):
    honest = report["honest"]
    assert honest["decided"] == honest["requests"] > 10_000
    assert honest["frictionless_share"] >= quality.HONEST_FRICTIONLESS_SHARE_TARGET
    assert set(report["by_honest_group"]) == set(HONEST_GROUPS)


def test_excess_claims_stopped_do_not_fall_below_this_branch_s_figures(report):
    excess = report["excess"]
    assert excess["decided"] == excess["requests"] > 1_000
    assert set(report["by_scheme"]) == set(SCHEMES)
    assert excess["stopped_share"] >= EXCESS_STOPPED_FLOOR
    assert excess["stopped_cents_share"] >= EXCESS_STOPPED_FLOOR


@pytest.mark.xfail(strict=True, reason="not reached yet: 87.6% by count, 88.2% by cents on the default profile "
                                       "(serial claimers' and double dippers' first claims look like honest ones); "
                                       "README 'Decision quality'")
def test_excess_claims_stopped_meet_the_95_percent_target_on_the_default_profile(report):
    excess = report["excess"]
    assert excess["stopped_share"] >= quality.EXCESS_STOPPED_SHARE_TARGET
    assert excess["stopped_cents_share"] >= quality.EXCESS_STOPPED_SHARE_TARGET
