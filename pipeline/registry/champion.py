"""The champion: which version the ``champion`` alias names, and the model behind it, downloaded once.
The API imports this module only."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.core.defaults import CHAMPION_ALIAS, REGISTERED_MODEL
from pipeline.core.device import resolve_device
from pipeline.core.errors import MovierecError, one_line
from pipeline.core.settings import Settings
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.registry.store import EVALUATION_NETWORK_ARTIFACT, MODEL_ARTIFACT, mlflow_client

log = logging.getLogger(__name__)


def champion_model_version(client: MlflowClient) -> Any | None:
    """The champion ModelVersion, or None when there is no registered model or no alias yet."""
    try:
        registered = client.get_registered_model(REGISTERED_MODEL)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (registered.aliases or {}).get(CHAMPION_ALIAS)
    return client.get_model_version(REGISTERED_MODEL, str(version)) if version is not None else None


@contextmanager
def _readable_registry() -> Iterator[None]:
    """A registry this role may not read says so: a database store whose tables MLflow has not created yet
    (nothing trained yet; MLflow would create them on first use, which the read-only role may not) or a
    role without SELECT on them."""
    import sqlalchemy.exc

    try:
        yield
    except sqlalchemy.exc.ProgrammingError as exc:
        if getattr(exc.orig, "pgcode", None) != "42501":  # insufficient_privilege
            raise
        raise MovierecError(
            f"cannot read the MLflow registry as this role ({one_line(exc.orig or exc)}): its tables are not "
            "created yet (nothing trained yet?) or the role has no SELECT on them"
        ) from None


def _download_once(target: Path, marker: Path, download: Callable[[Path], Path]) -> None:
    """``target`` filled by ``download`` (into the temporary directory it is given; it returns the
    directory to keep) unless ``marker`` shows an earlier download complete; renamed into place whole, so a
    concurrent loader sees all or nothing."""
    if marker.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        staged = download(Path(tmp))
        try:
            staged.rename(target)
        except OSError:
            if not marker.exists():  # another loader won the race, or a real failure
                raise


def _model_dir(settings: Settings, version: Any) -> Path:
    """The champion's ``PublishedBlend.save`` directory, downloaded once into ``<home>/models``."""
    target = settings.home / "models" / f"{REGISTERED_MODEL}-v{version.version}-{version.run_id or 'norun'}"

    def download(tmp: Path) -> Path:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{REGISTERED_MODEL}/{version.version}", dst_path=str(tmp)
            )
        )
        from mlflow.models import Model

        flavor = Model.load(str(local / "MLmodel")).flavors["python_function"]
        source = local / flavor["artifacts"][MODEL_ARTIFACT]["path"]
        staged = tmp / "staged"
        staged.mkdir()
        shutil.move(str(source), staged / MODEL_ARTIFACT)
        return staged

    _download_once(target, target / MODEL_ARTIFACT / "blend.json", download)
    return target / MODEL_ARTIFACT


def champion_evaluation_network(settings: Settings) -> HybridArtifact | None:
    """The validation network of the champion's evaluation (logged with its training run), downloaded once
    into ``<home>/models``: where this week's evaluation starts its own
    (``pipeline.evaluation.validation_chain``). None when there is no champion yet, when its run logged none
    (trained before the evaluation kept it), or when it cannot be fetched or read (logged: the evaluation
    then trains its network from scratch, as every week did before)."""
    with _readable_registry(), mlflow_client(settings) as client:
        champion = champion_model_version(client)
        if champion is None or not champion.run_id:
            return None
        name = f"{REGISTERED_MODEL}-v{champion.version}-{champion.run_id}-evaluation"
        target = settings.home / "models" / name
        run_id = champion.run_id
        try:
            if not (target / "model.json").exists():
                logged = client.list_artifacts(run_id)
                if not any(f.path == EVALUATION_NETWORK_ARTIFACT for f in logged):
                    return None
                _download_once(
                    target,
                    target / "model.json",
                    lambda tmp: Path(
                        client.download_artifacts(run_id, EVALUATION_NETWORK_ARTIFACT, str(tmp))
                    ),
                )
            return HybridArtifact.load(target)
        except (MlflowException, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: torch.load's
            log.warning(
                "the champion v%s's evaluation network cannot be used (%s)", champion.version, one_line(exc)
            )
            return None


def champion_version(settings: Settings) -> int | None:
    """The version the ``champion`` alias names now (None: no champion yet); no download, for pollers."""
    with _readable_registry(), mlflow_client(settings) as client:
        champion = champion_model_version(client)
    return int(champion.version) if champion is not None else None


def load_champion(
    settings: Settings, device: str = "cpu", version: int | None = None
) -> tuple[PublishedBlend, int]:
    """The model behind ``models:/movierec-hybrid@champion`` and its version number; ``version``: that
    registered version instead (the one a batch's shards were planned with, even if the alias moved since)."""
    with _readable_registry(), mlflow_client(settings) as client:
        champion = (
            champion_model_version(client)
            if version is None
            else client.get_model_version(REGISTERED_MODEL, str(version))
        )
        if champion is None:
            # The URI may hold a password: name its scheme only.
            scheme = mlflow.get_tracking_uri().split(":", 1)[0]
            raise MovierecError(
                f"no {REGISTERED_MODEL}@{CHAMPION_ALIAS} yet in the MLflow registry "
                f"({scheme} store): train a model and let the promotion gate accept it"
            )
        directory = _model_dir(settings, champion)
    return PublishedBlend.load(directory, device=resolve_device(device)), int(champion.version)


def champion_network(settings: Settings, device: str = "cpu") -> tuple[HybridArtifact, int] | None:
    """The champion's network alone and its version (what a warm start begins from); None: no champion yet.
    Its partners (EASE's weights can be gigabytes) are not loaded."""
    with _readable_registry(), mlflow_client(settings) as client:
        champion = champion_model_version(client)
        if champion is None:
            return None
        directory = _model_dir(settings, champion)
    return HybridArtifact.load(
        directory / "network",  # PublishedBlend.save's layout
        device=resolve_device(device),
    ), int(champion.version)
