from pathlib import Path

from pipeline.core.settings import Settings


def test_defaults_live_under_dot_movierec_in_the_working_directory(monkeypatch, tmp_path):
    for var in ("MOVIEREC_HOME", "DATABASE_URL", "MLFLOW_TRACKING_URI", "MOVIEREC_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.home == tmp_path / ".movierec"
    assert s.embedded and s.device == "auto" and s.mlflow_tracking_uri is None
    assert s.pg_dir.is_relative_to(s.home) and s.downloads_dir.is_relative_to(s.home)


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/x")
    monkeypatch.setenv("MOVIEREC_DEVICE", "cpu")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    s = Settings()
    assert s.home == Path(tmp_path / "h") and s.database_url == "postgresql://u@db/x" and not s.embedded
    assert s.device == "cpu" and s.mlflow_tracking_uri is None


def test_bad_device_is_refused(monkeypatch):
    monkeypatch.setenv("MOVIEREC_DEVICE", "tpu")
    try:
        Settings()
    except ValueError as exc:
        assert "MOVIEREC_DEVICE" in str(exc)
    else:
        raise AssertionError("MOVIEREC_DEVICE=tpu was accepted")
