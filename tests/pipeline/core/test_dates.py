"""The one parser of data cut-offs and logical dates (``pipeline.core.dates.parse_as_of``)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.core.dates import parse_as_of


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("1998-03-01", datetime(1998, 3, 1, tzinfo=UTC)),  # a bare date: its midnight UTC
        ("1998-03-01T12:30:00", datetime(1998, 3, 1, 12, 30, tzinfo=UTC)),  # naive: taken as UTC
        ("1998-03-01T12:30:00Z", datetime(1998, 3, 1, 12, 30, tzinfo=UTC)),
        ("1998-03-01T14:30:00+02:00", datetime(1998, 3, 1, 12, 30, tzinfo=UTC)),
        (datetime(1998, 3, 1, 7, tzinfo=timezone(timedelta(hours=-5))), datetime(1998, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_dates_and_instants_become_aware_utc(value, expected):
    parsed = parse_as_of(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo == UTC


def test_anything_else_is_a_value_error():
    with pytest.raises(ValueError):
        parse_as_of("last week")
