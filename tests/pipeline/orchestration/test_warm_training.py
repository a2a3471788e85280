"""The weekly train step warm-starts from the champion in the real MLflow registry, and says so (step result,
network meta, MLflow tags); ``full_retrain`` trains from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.orchestration import steps
from pipeline.registry.champion import champion_evaluation_network, champion_network
from pipeline.registry.store import mlflow_client
from tests.support.weekly import EPOCHS, Published


def _tags(published: Published, run_id: str) -> dict[str, str]:
    with mlflow_client(published.settings) as client:
        return dict(client.get_run(run_id).data.tags)


def _network(published: Published, model_uri: str) -> HybridArtifact:
    with mlflow_client(published.settings):
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)

    return HybridArtifact.load(next(Path(local).rglob("network")))


def test_first_training_starts_from_the_evaluation_then_the_next_from_the_champion(weekly_run: Published):
    first = weekly_run.results["training"]
    assert first["kind"] == "warm"  # no champion yet: the evaluate step saved its network for this one
    assert (
        first["training_reason"] == "no champion to start from: warm start from this run's evaluation network"
    )
    assert Path(weekly_run.results["evaluation"]["network_start"], "model.json").is_file()
    champion = champion_network(weekly_run.settings)
    assert champion is not None and champion[1] == first["version"]
    chain_start = champion[0].meta["full_cutoff"]

    # a warm epoch of at most 4,000 ratings: the slice holds more, so each epoch samples the older ones
    budget = weekly_run.settings.model_copy(update={"warm_start_epoch_ratings": 4_000})
    second = steps.train(None, weekly_run.results["evaluation"], EPOCHS, "cpu", settings=budget)
    assert second["kind"] == "warm"
    assert f"warm start from the champion v{first['version']}" in second["training_reason"]
    assert second["version"] == first["version"] + 1
    tags = _tags(weekly_run, second["run_id"])
    assert tags["movierec.training"] == "warm"
    assert tags["movierec.full_cutoff"] == chain_start  # the chain's age counts from the first week
    assert "users kept, 0 new" in tags["movierec.warm_start"]
    # the same ratings as the champion's: nothing after its cut-off, so each epoch is 4,000 older ones
    assert tags["movierec.replay"].startswith("each epoch the 0 ratings after ")
    assert "4,000 of the" in tags["movierec.replay"]
    network = _network(weekly_run, second["model_uri"])
    assert network.meta["full_cutoff"] == chain_start
    assert network.meta["cutoff"] == champion[0].meta["cutoff"]

    third = steps.train(
        None, weekly_run.results["evaluation"], EPOCHS, "cpu", settings=weekly_run.settings, full_retrain=True
    )
    assert third["kind"] == "full" and third["training_reason"] == "full retrain requested"
    assert _tags(weekly_run, third["run_id"])["movierec.training"] == "full"
    assert "movierec.warm_start" not in _tags(weekly_run, third["run_id"])
    assert "movierec.replay" not in _tags(weekly_run, third["run_id"])


def test_the_next_evaluation_starts_its_validation_network_from_the_champions_evaluation(
    weekly_run: Published,
):
    """The first evaluation trains its validation network from scratch and the train step logs it with the
    champion's run; the next evaluation starts its own from it (the same policy as the train step's), unless
    a full retrain is asked for."""
    first = weekly_run.results["evaluation"]
    report = json.loads(Path(first["report_path"]).read_text())
    assert report["networks"]["temporal"]["validation"]["training"] == "full"
    assert report["networks"]["temporal"]["validation"]["reason"] == (
        "no champion's evaluation network to start from"
    )
    with mlflow_client(weekly_run.settings) as client:
        logged = {f.path for f in client.list_artifacts(weekly_run.results["training"]["run_id"])}
    assert "evaluation-network" in logged

    second = steps.evaluate(None, EPOCHS, "cpu", settings=weekly_run.settings)
    validation = json.loads(Path(second["report_path"]).read_text())["networks"]["temporal"]["validation"]
    assert validation["training"] == "warm"
    assert validation["reason"].startswith("warm start from the champion's evaluation network (0.0 weeks")
    assert validation["epochs"] == min(weekly_run.settings.warm_start_epochs, EPOCHS)
    chain_start = HybridArtifact.load(Path(first["validation_network"])).meta
    assert chain_start["training"] == "full" and chain_start["full_cutoff"] == chain_start["cutoff"]
    network = HybridArtifact.load(Path(second["validation_network"]))
    assert network.meta["training"] == "warm"
    assert network.meta["full_cutoff"] == chain_start["full_cutoff"]  # the chain's age counts from the first

    third = steps.evaluate(None, EPOCHS, "cpu", settings=weekly_run.settings, full_retrain=True)
    validation = json.loads(Path(third["report_path"]).read_text())["networks"]["temporal"]["validation"]
    assert validation["training"] == "full" and validation["reason"] == "full retrain requested"

    # A copy that cannot be read is passed over (logged), not a failed evaluation: it trains from scratch.
    (copy,) = (weekly_run.settings.home / "models").glob("*-evaluation")
    (copy / "model.json").write_text("{not json")
    assert champion_evaluation_network(weekly_run.settings) is None
