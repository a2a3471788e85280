"""``movierec train`` and ``movierec evaluate``: the weekly flow's training steps, and the evaluation
alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.options import AsOf, Device, Epochs, FullRetrain, as_of_option, device_option
from pipeline.cli.render import err, out, print_evaluation
from pipeline.core.defaults import PRIMARY_PROTOCOL, REGISTERED_MODEL
from pipeline.core.settings import get_settings


def train(
    as_of: AsOf = None,
    epochs: Epochs = None,
    device: Device = None,
    all_protocols: Annotated[
        bool,
        typer.Option(
            "--all-protocols", help="also evaluate the random protocol (RMSE/MAE): two more trainings"
        ),
    ] = False,
    full_retrain: FullRetrain = False,
) -> None:
    """Evaluate beside the baselines, train on all data up to the cut-off, register in MLflow, run the gate:
    the weekly DAG's evaluate, train and promote steps, in this process."""
    from pipeline.orchestration.steps import train_steps

    as_of_option(as_of)  # a bad date fails before any work
    protocols = (PRIMARY_PROTOCOL, "random") if all_protocols else (PRIMARY_PROTOCOL,)

    def on_step(name: str, value: Any) -> None:
        err.print(f"[green]✓[/green] {name}", highlight=False)

    results = train_steps(
        as_of,
        epochs,
        device_option(device),
        protocols=protocols,
        settings=get_settings(),
        progress=sys.stderr.isatty(),
        on_step=on_step,
        full_retrain=full_retrain,
    )
    evaluation, training, decision = results["evaluation"], results["training"], results["promotion"]
    print_evaluation(json.loads(Path(evaluation["report_path"]).read_text()))
    verdict = "promoted to champion" if decision["promoted"] else "not promoted"
    out.print(
        f"registered {REGISTERED_MODEL} version {training['version']} (MLflow run {training['run_id']}): "
        f"{verdict} — {decision['reason']}"
    )
    out.print(f"evaluation report: {evaluation['report_path']}")


def evaluate(
    as_of: AsOf = None,
    epochs: Epochs = None,
    device: Device = None,
    output: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
) -> None:
    """Both protocols, every baseline, the evaluation-only models (ALS, AutoRec, BPR, logistic MF,
    item-kNN, LightGCN, NeuMF, SASRec) and the network on the same splits, plus item cold start."""
    from database.engine import get_engine
    from pipeline.evaluation.benchmark import EVALUATION_ONLY, evaluate_all
    from pipeline.features.loading import load_training_data
    from pipeline.orchestration.steps import hybrid_config, offered_members

    settings = get_settings()
    data = load_training_data(get_engine(settings), as_of_option(as_of), progress=sys.stderr.isatty())
    outcome = evaluate_all(
        data,
        hybrid_config(epochs),
        device=device_option(device),
        progress=sys.stderr.isatty(),
        extra=tuple(EVALUATION_ONLY),
        warm_epochs=settings.warm_start_epochs,
        members=offered_members(settings, len(data.interactions)),
        autorec_max_cells=settings.autorec_max_cells,
        max_users=settings.evaluation_user_cap,
    )
    report = outcome.to_dict()
    print_evaluation(report)
    if output:
        output.write_text(json.dumps(report, indent=1))
        out.print(f"report written to {output}")
