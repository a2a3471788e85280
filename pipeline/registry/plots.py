"""The run's plots for MLflow: the learning curve and the evaluation chart (matplotlib stays out of the
rest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def learning_curve(history: list[dict[str, float]]) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas on save
    from matplotlib.ticker import MaxNLocator

    epochs = [int(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    panels = [
        ("total loss", ("loss",)),
        ("rating MSE", ("mse", "val_mse")),
        ("ranking cross-entropy", ("ranking_ce", "val_ranking_ce")),
    ]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    for ax, (title, keys) in zip(fig.subplots(1, len(panels)), panels):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig


def evaluation_chart(values: dict[str, float], metric: str) -> Any:
    from matplotlib.figure import Figure

    names = list(values)
    fig = Figure(figsize=(max(4.0, 1.2 * len(names)), 3.6), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(
        names,
        [values[n] for n in names],
        color=["tab:orange" if n == "hybrid" else "tab:blue" for n in names],
    )
    ax.bar_label(bars, fmt="%.4f")
    ax.set_title(metric)
    return fig


def tradeoff_chart(rows: Sequence[Mapping[str, float]], k: int = 10) -> Any:
    """The diversity trade-off on the validation split: NDCG@k against intra-list diversity and against
    catalogue coverage, one labelled point per re-rank setting (``tradeoff_label``)."""
    from matplotlib.figure import Figure

    from pipeline.registry.report import tradeoff_label

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    for ax, x in zip(fig.subplots(1, 2), ("intra_list_diversity", "coverage"), strict=True):
        for series, marker in (("strength", "o"), ("popularity_penalty", "s")):
            points = [
                r for r in rows if r[series] > 0 or (series == "strength" and r["popularity_penalty"] == 0)
            ]
            if points:
                ax.plot([r[x] for r in points], [r[f"ndcg@{k}"] for r in points], marker=marker, label=series)
            for r in points:
                ax.annotate(
                    tradeoff_label(r),
                    (r[x], r[f"ndcg@{k}"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xlabel(f"{x.replace('_', ' ')} @{k}")
        ax.set_ylabel(f"NDCG@{k}")
        ax.legend()
    fig.suptitle("diversity re-rank on the validation split")
    return fig
