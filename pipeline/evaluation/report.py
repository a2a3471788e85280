"""The evaluation report: every model's metrics under every protocol of one run, JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.core.defaults import RELEVANCE_THRESHOLD
from pipeline.core.jsonsafe import json_safe
from pipeline.evaluation.splits import PROTOCOLS, SPLIT_SEED, TEST_FRACTION


def sample_line(sample: dict[str, int]) -> str:
    """``EvaluationReport.sample`` in words."""
    return (
        f"fitted and evaluated on a fixed sample of {sample['users']:,} of {sample['of_users']:,} users "
        f"({sample['ratings']:,} of {sample['of_ratings']:,} ratings; MOVIEREC_EVALUATION_MAX_USERS)"
    )


@dataclass
class EvaluationReport:
    """Metrics of every model under every protocol of one run, on shared splits."""

    k: int
    n_users: int
    n_items: int
    n_ratings: int
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # protocol -> n_train, n_test
    results: dict[str, dict[str, dict[str, float]]] = field(
        default_factory=dict
    )  # protocol -> model -> metrics
    timings: dict[str, dict[str, dict[str, float]]] = field(
        default_factory=dict
    )  # protocol -> model -> seconds
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # protocol -> model -> one-line error
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> its hyperparameters
    # protocol -> "validation" / "protocol" -> how that network was trained (ratings, epochs, full or warm)
    networks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # users, of_users, ratings, of_ratings: the fixed sample of users evaluated (None: every one)
    sample: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``results`` is protocol -> model -> metrics (with ``fit_seconds``/``eval_seconds``; a
        failed model's row has no metrics and ``error``, its one-line error).

        NaN becomes None; the protocols' definitions, dataset size and split sizes, and every fitted model's
        hyperparameters (``configs``: model -> config) and how the network rows were trained (``networks``:
        protocol -> the weight search's validation network and the protocol network) come along, and
        ``sample`` (users and ratings kept of how many) when a fixed sample of the users was evaluated.
        """
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for protocol, models in self.results.items():
            results[protocol] = {}
            failed = self.failures.get(protocol, {})
            for model, metrics in models.items():
                row: dict[str, Any] = json_safe({name: float(value) for name, value in metrics.items()})
                row.update({name: round(value, 3) for name, value in self.timings[protocol][model].items()})
                if model in failed:
                    row["error"] = failed[model]
                results[protocol][model] = row
        return {
            "k": self.k,
            "dataset": {"n_users": self.n_users, "n_items": self.n_items, "n_ratings": self.n_ratings},
            **({"sample": dict(self.sample)} if self.sample else {}),
            "protocols": {
                p: {
                    "definition": PROTOCOLS[p],
                    "test_fraction": TEST_FRACTION,
                    **(
                        {"seed": SPLIT_SEED}
                        if p == "random"
                        else {"relevance_threshold": RELEVANCE_THRESHOLD}
                    ),
                }
                for p in self.results
            },
            "splits": {p: dict(sizes) for p, sizes in self.splits.items()},
            "results": results,
            "configs": json_safe(self.configs),
            "networks": json_safe(self.networks),
        }
