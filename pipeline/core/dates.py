"""The one parser of data cut-offs and logical dates."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_as_of(value: str | datetime | None) -> datetime | None:
    """An ISO-8601 date or instant as an aware UTC datetime (a bare date means its midnight UTC; a naive
    instant is taken as UTC); None or "" stays None. Raises ``ValueError`` on anything else."""
    if value is None or value == "":
        return None
    stamp = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
