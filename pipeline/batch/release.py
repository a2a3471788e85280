"""The publication check: a new list set may not lose coverage or long tail against the published one.

Run inside the publication's transaction, after the new batch's ``list_metrics`` are computed and before it is
published: its figures of each list's top 10 (``at_10``: what a page shows first, and comparable whatever each
batch's top-N) against the published batch's, under ``pipeline.evaluation.guardrails.list_guardrails``.
A refused batch is kept with ``status = 'refused'`` (its rows and figures, for a look and for
``compare_batches``) and the published batch stays published; ``force`` publishes anyway and says so. Either
way the checks' figures are kept in the new batch's ``list_metrics`` under ``release_check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from pipeline.core.errors import DataQualityError
from pipeline.evaluation.guardrails import (
    Guardrail,
    GuardrailCheck,
    as_records,
    check_guardrails,
    failures,
    list_guardrails,
)

CHECKED = "at_10"  # the part of list_metrics the check compares


class ListSetRefused(DataQualityError):
    """The new batch's lists fell below the published batch's by more than a guardrail's margin (a failed
    quality check of the output: retrying the same run cannot fix it)."""


@dataclass(frozen=True)
class ReleaseCheck:
    """The publication check's outcome for one batch."""

    batch_id: int
    compared_with: int | None  # the published batch, None when there was none
    checks: list[GuardrailCheck] = field(default_factory=list)
    force: bool = False

    @property
    def failed(self) -> list[GuardrailCheck]:
        return failures(self.checks)

    @property
    def refused(self) -> bool:
        return bool(self.failed) and not self.force

    def record(self) -> dict[str, Any]:
        """What ``list_metrics["release_check"]`` holds."""
        return {
            "compared_with": self.compared_with,
            "checks": as_records(self.checks),
            "refused": self.refused,
            "forced": bool(self.failed) and self.force,
        }

    def reason(self) -> str:
        """One line: which figures fell below which floor, against which batch."""
        what = "; ".join(f"top-10 {c.describe()}" for c in self.failed)
        if self.force:
            return (
                f"batch {self.batch_id} published with --force although {what} against batch "
                f"{self.compared_with}"
            )
        return (
            f"publication of batch {self.batch_id} refused: {what} against published batch "
            f"{self.compared_with}, which stays published (the refused batch is kept with status 'refused'; "
            "--force publishes anyway)"
        )


def check_release(
    conn: Connection,
    batch_id: int,
    figures: Mapping[str, Any],
    *,
    guardrails: tuple[Guardrail, ...] | None = None,
    force: bool = False,
) -> ReleaseCheck:
    """Batch ``batch_id``'s ``figures`` (its ``list_metrics``) against the published batch's. Nothing
    published yet, or a published batch without figures (made before they were kept): nothing is compared,
    and it passes."""
    row = conn.execute(
        text("SELECT batch_id, list_metrics FROM recommendation_batches WHERE status = 'published'")
    ).first()
    if row is None:
        return ReleaseCheck(batch_id, None, force=force)
    rails = list_guardrails() if guardrails is None else guardrails
    checks = check_guardrails(figures.get(CHECKED) or {}, (row.list_metrics or {}).get(CHECKED) or {}, rails)
    return ReleaseCheck(batch_id, int(row.batch_id), checks, force)
