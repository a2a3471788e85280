"""Errors shown as one line stay one short line, whatever the exception carries."""

from __future__ import annotations

from pipeline.core.defaults import MAX_ERROR_LINE_CHARS
from pipeline.core.errors import InputError, one_line, shorten


def test_one_line_keeps_the_type_and_the_first_line():
    assert one_line(InputError("u.data: empty\nsecond line")) == "InputError: u.data: empty"
    assert one_line(ValueError()) == "ValueError"


def test_a_megabyte_message_becomes_a_bounded_line():
    line = one_line(ValueError("invalid input value: " + "x" * (1 << 20)))
    assert len(line) == MAX_ERROR_LINE_CHARS
    assert line.startswith("ValueError: invalid input value: xxx") and line.endswith("…")


def test_shorten_leaves_short_text_alone_and_marks_a_cut():
    assert shorten("short", 10) == "short"
    assert shorten("0123456789abc", 10) == "012345678…"
