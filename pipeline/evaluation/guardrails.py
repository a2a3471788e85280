"""Release guardrails: figures a new model or list set may not lose against the one it replaces.

The promotion gate promotes a model only when it beats the champion on the primary metric; a model can do
that and still show everyone the same popular films, or serve users with few ratings worse. So the gate
(``pipeline.registry.gate``) and the publication check (``pipeline.batch.publish``) also compare guarded
figures with the incumbent's: a guarded figure may fall at most ``margin`` (relative) below it.

* ``coverage@10`` and ``long_tail@10`` on the temporal protocol (``pipeline.evaluation.protocol``) for a
  model; ``coverage`` and ``long_tail_share`` of the published lists for a list set;
* ``cold_ndcg@10``: NDCG@10 over the evaluated users with at most ``COLD_USER_MAX_RATINGS`` train ratings.

The floor is ``incumbent * (1 - margin) - slack``: the relative margin tolerates a retrain's noise on
sizeable figures; the absolute ``slack`` keeps a figure near zero (a long-tail share of 0.3% on ML-100K's
top-10 lists) from refusing a model over one listed row.

A figure either side lacks (an incumbent from before the figure existed) is reported as not compared, never
as a failure; a NaN new figure fails. Pure functions over flat metric dicts: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.core.defaults import (
    GUARDRAIL_COLD_NDCG_MARGIN,
    GUARDRAIL_COVERAGE_MARGIN,
    GUARDRAIL_LONG_TAIL_MARGIN,
    GUARDRAIL_SHARE_SLACK,
)


@dataclass(frozen=True)
class Guardrail:
    """``metric`` (a key of the flat metrics) may fall at most ``margin`` (a share of the incumbent's
    figure) plus ``slack`` (absolute) below the incumbent's."""

    metric: str
    margin: float
    slack: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise ValueError(f"guardrail margin for {self.metric} must be in [0, 1), got {self.margin}")
        if not 0 <= self.slack < 1:
            raise ValueError(f"guardrail slack for {self.metric} must be in [0, 1), got {self.slack}")


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail's outcome. ``passed`` is None when it could not be compared (a figure is missing)."""

    metric: str
    new: float | None
    incumbent: float | None
    floor: float | None
    passed: bool | None

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.metric} not compared (no figure {'now' if self.new is None else 'before'})"
        relation = ">=" if self.passed else "<"
        return f"{self.metric} {self.new:.4g} {relation} floor {self.floor:.4g} (was {self.incumbent:.4g})"


def model_guardrails(
    protocol: str = "temporal",
    *,
    coverage_margin: float = GUARDRAIL_COVERAGE_MARGIN,
    long_tail_margin: float = GUARDRAIL_LONG_TAIL_MARGIN,
    cold_ndcg_margin: float = GUARDRAIL_COLD_NDCG_MARGIN,
) -> tuple[Guardrail, ...]:
    """The promotion gate's guardrails, as keys of ``flatten_metrics``'s output (``temporal.ndcg_at_10``)."""
    return (
        Guardrail(f"{protocol}.coverage_at_10", coverage_margin),
        Guardrail(f"{protocol}.long_tail_at_10", long_tail_margin, GUARDRAIL_SHARE_SLACK),
        Guardrail(f"{protocol}.cold_ndcg_at_10", cold_ndcg_margin),
    )


def list_guardrails(
    *,
    coverage_margin: float = GUARDRAIL_COVERAGE_MARGIN,
    long_tail_margin: float = GUARDRAIL_LONG_TAIL_MARGIN,
) -> tuple[Guardrail, ...]:
    """The publication check's guardrails, as keys of a batch's ``list_metrics``."""
    return (
        Guardrail("coverage", coverage_margin),
        Guardrail("long_tail_share", long_tail_margin, GUARDRAIL_SHARE_SLACK),
    )


def _figure(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def check_guardrails(
    new: Mapping[str, Any], incumbent: Mapping[str, Any], guardrails: Sequence[Guardrail]
) -> list[GuardrailCheck]:
    """Each guardrail on ``new``'s figures against ``incumbent``'s (both flat: key -> number)."""
    checks = []
    for rail in guardrails:
        now, before = _figure(new, rail.metric), _figure(incumbent, rail.metric)
        if now is None or before is None or math.isnan(before):
            checks.append(GuardrailCheck(rail.metric, now, before, None, None))
            continue
        floor = before * (1 - rail.margin) - rail.slack
        checks.append(GuardrailCheck(rail.metric, now, before, floor, bool(now >= floor)))
    return checks


def failures(checks: Sequence[GuardrailCheck]) -> list[GuardrailCheck]:
    return [c for c in checks if c.passed is False]


def as_records(checks: Sequence[GuardrailCheck]) -> list[dict[str, Any]]:
    """The checks as plain JSON records (MLflow tags, ``model_versions``, a batch's ``list_metrics``)."""
    return [asdict(c) for c in checks]
