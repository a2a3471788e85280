"""The evaluation report every training run logs (``evaluation.json``) as rows of text: the one definition of
its table and of the blend's weights line, for the CLI (rich) and the web UI (HTML) alike.

The report is ``EvaluationOutcome.to_dict``: ``k``, ``results`` (protocol -> model -> metrics, with
``fit_seconds``) and the blend's ``blend_weight``, ``rating_weight`` and ``rerank_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from textwrap import shorten
from typing import Any

from pipeline.models.blend.weights import BlendWeights

# The folder of a run's artifacts the report is logged under (``log_training_run(artifacts=...)``).
REPORT_ARTIFACT_DIR = "evaluation.json"
# The run's plots, ``plots/<name>.png`` (``log_training_run``).
PLOT_NAMES = ("evaluation", "learning_curve")

_COLUMNS = (
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("ndcg", "NDCG"),
    ("recall", "Recall"),
    ("precision", "Prec"),
    ("mrr", "MRR"),
    ("hr", "HR"),
    ("coverage", "Cov"),
    ("users", "Users"),
)
_UNRANKED = ("rmse", "mae", "users")  # metrics without a cut-off
FAILED_CHARS = 120  # of a failed model's error, in its row (the report holds it whole)


def evaluation_headers(k: int) -> list[str]:
    """The table's headers: protocol, model, one per metric (ranking ones at ``k``), fit seconds."""
    metrics = [header if key in _UNRANKED else f"{header}@{k}" for key, header in _COLUMNS]
    return ["Protocol", "Model", *metrics, "Fit s"]


def evaluation_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per (protocol, model), cells as ``evaluation_headers``; a dash where nothing applies. A model
    that failed keeps its row: its name cell says so, with the error's first ``FAILED_CHARS`` characters."""
    k = report["k"]
    rows = []
    for protocol, models in report["results"].items():
        for model, metrics in models.items():
            error = metrics.get("error")
            cells = [
                protocol,
                model if error is None else f"{model} — failed: {shorten(error, FAILED_CHARS)}",
            ]
            for key, _ in _COLUMNS:
                value = metrics.get(key if key in _UNRANKED else f"{key}@{k}")
                if value is None or math.isnan(value):
                    cells.append("—")
                else:
                    cells.append(f"{int(value)}" if key == "users" else f"{value:.4f}")
            fit = metrics.get("fit_seconds")
            cells.append("—" if fit is None else f"{fit:.1f}")
            rows.append(cells)
    return rows


def blend_line(report: dict[str, Any]) -> str:
    """What is published, with the weights the evaluation chose (``BlendWeights.describe``)."""
    weights = BlendWeights.from_dict(
        {
            "weight": report["blend_weight"],
            "rating_weight": report["rating_weight"],
            "rerank_weight": report["rerank_weight"],
            "als_weight": report.get("als_weight", 0.0),
            "members": report.get("member_weights") or {},
            "autorec_weight": report.get("autorec_weight", 0.0),
        }
    )
    return f"published = blend: {weights.describe()} (weights chosen on validation splits of the train data)"


# The diversity trade-off table a training run logs (``log_training_run(tradeoff=...)``).
TRADEOFF_ARTIFACT = "diversity_tradeoff.json"
_TRADEOFF_COLUMNS = (
    ("ndcg@10", "NDCG@10"),
    ("coverage", "Cov"),
    ("intra_list_diversity", "ILD"),
    ("novelty", "Novelty"),
    ("long_tail_share", "Tail"),
    ("gini", "Gini"),
)


def tradeoff_label(row: Mapping[str, float]) -> str:
    """A re-rank setting in a few characters: ``strength 0.25``, ``penalty 0.5`` or ``none``."""
    if row["popularity_penalty"] > 0:
        return f"penalty {row['popularity_penalty']:g}"
    return f"strength {row['strength']:g}" if row["strength"] > 0 else "none"


def tradeoff_lines(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The trade-off table as aligned text lines (header first); no lines without rows."""
    if not rows:
        return []
    cells = [["setting", *(header for _, header in _TRADEOFF_COLUMNS)]]
    for row in rows:
        values = (row.get(key) for key, _ in _TRADEOFF_COLUMNS)
        cells.append(
            [tradeoff_label(row), *("—" if v is None or math.isnan(v) else f"{v:.4f}" for v in values)]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def list_figures_line(figures: Mapping[str, Any]) -> str:
    """A batch's ``list_metrics`` in one line: the whole lists' figures and the re-rank settings."""

    def fig(key: str) -> str:
        value = figures.get(key)
        return "—" if value is None else f"{value:.4f}"

    rerank = figures.get("rerank") or {}
    return (
        f"coverage {fig('coverage')}, intra-list diversity {fig('intra_list_diversity')}, novelty "
        f"{fig('novelty')}, long-tail share {fig('long_tail_share')}, Gini {fig('gini')} (diversity "
        f"{rerank.get('strength', 0):g}, popularity penalty {rerank.get('popularity_penalty', 0):g})"
    )
