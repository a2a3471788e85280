"""Nothing phones home: a process that imports the pipeline has MLflow's usage telemetry off.

MLflow decides at ``import mlflow`` and also stays quiet when it detects CI or pytest, so each check runs in
a fresh interpreter with those signals (and any opt-out already set) removed from its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.core.defaults import TELEMETRY_OPT_OUTS

_ROOT = Path(__file__).resolve().parents[3]
_CI_SIGNALS = {"CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE"}


def _telemetry_client_after(imports: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in _CI_SIGNALS and k not in TELEMETRY_OPT_OUTS}
    code = f"{imports}; from mlflow.telemetry import get_telemetry_client as g; print(type(g()).__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_mlflow_telemetry_is_off_in_a_process_that_imports_the_pipeline():
    assert _telemetry_client_after("import mlflow") == "TelemetryClient"  # MLflow's default: on
    assert _telemetry_client_after("import pipeline, mlflow") == "NoneType"
    assert _telemetry_client_after("import model_server.app, mlflow") == "NoneType"  # the API's process
