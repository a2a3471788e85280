"""What the commands print (``pipeline.cli.render``): the evaluation table from a report's JSON form, the psql
address."""

from __future__ import annotations

from rich.console import Console

from pipeline.cli.render import evaluation_table, psql_url
from pipeline.core.settings import Settings
from pipeline.evaluation.report import EvaluationReport


def _report() -> dict:
    report = EvaluationReport(k=10, n_users=3, n_items=5, n_ratings=12)
    report.splits = {"random": {"n_train": 10, "n_test": 2}, "temporal": {"n_train": 9, "n_test": 3}}
    report.results = {
        "random": {"biased_mf": {"rmse": 0.91234, "mae": 0.7, "ratings": 2.0}, "ease": {}},
        "temporal": {"ease": {"ndcg@10": 0.25, "recall@10": 0.5, "coverage@10": 0.4, "users": 3.0}},
    }
    report.timings = {
        "random": {
            "biased_mf": {"fit_seconds": 1.25, "eval_seconds": 0.1},
            "ease": {"fit_seconds": 0.5, "eval_seconds": 0.0},
        },
        "temporal": {"ease": {"fit_seconds": 0.4, "eval_seconds": 0.2}},
    }
    return report.to_dict()


def test_evaluation_table_has_a_row_per_protocol_and_model_and_dashes_where_nothing_applies():
    console = Console(width=200, record=True)
    console.print(evaluation_table(_report()))
    text = console.export_text()
    assert "Offline evaluation (k=10)" in text and "NDCG@10" in text and "RMSE" in text
    rows = {
        (cells[0], cells[1]): cells[2:]
        for cells in (
            [c.strip() for c in line.strip("│┃ ").split("│")] for line in text.splitlines() if "│" in line
        )
        if len(cells) > 2
    }
    assert rows[("random", "biased_mf")][:2] == ["0.9123", "0.7000"]
    assert rows[("random", "biased_mf")][-1] == "1.2"  # fit seconds
    assert rows[("random", "ease")][:-1] == ["—"] * 9  # a ranking-only model under the rating protocol
    assert rows[("temporal", "ease")][2:4] == ["0.2500", "0.5000"]
    assert rows[("temporal", "ease")][8] == "3"  # users, as a count


def test_the_psql_address_never_carries_the_password_and_prefers_the_public_one():
    inside = "postgresql+psycopg2://movierec:s3cret-pw@postgres:5432/movierec"
    assert psql_url(Settings(DATABASE_URL=inside)) == "postgresql://movierec@postgres:5432/movierec"
    stack = Settings(
        DATABASE_URL=inside,
        MOVIEREC_PUBLIC_DATABASE_URL="postgresql://movierec:s3cret-pw@127.0.0.1:5432/movierec",
    )
    assert psql_url(stack) == "postgresql://movierec@127.0.0.1:5432/movierec"
