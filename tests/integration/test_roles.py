"""Scale-out: with embedded chDB exactly one worker projects; a second one that would open the same
path refuses with a clear message, and one started with --roles decide,limits runs beside it."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import REPO, _free_port

SECOND_START_S_MAX = 90


def test_a_second_projecting_worker_on_the_same_chdb_path_refuses_clearly(deployment):
    deployment.start_worker()
    env = {**deployment.env, "REMEDY_WEB_PORT": str(_free_port())}
    second = subprocess.run([sys.executable, "-m", "streams.commands.cli", "worker"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=SECOND_START_S_MAX)
    assert second.returncode == 1
    assert "open in another process" in second.stderr and "--roles decide,limits" in second.stderr
    assert "Traceback" not in second.stderr
    assert deployment.get("/health")["roles"] == ["decide", "limits", "project"]  # the first is unharmed


def test_unknown_roles_are_named():
    result = subprocess.run([sys.executable, "-m", "streams.commands.cli", "worker", "--roles", "decide,projekt"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "projekt" in result.stderr and "Traceback" not in result.stderr
