"""Errors a user can act on: the CLI prints their message as a one-line reason and exits non-zero."""

from pipeline.core.defaults import MAX_ERROR_LINE_CHARS, MAX_REASON_CHARS


class MovierecError(Exception):
    """Base class for expected failures (bad input, unreachable source, missing server)."""


class InputError(MovierecError):
    """The input is unusable as a whole: missing file, unknown layout, empty file."""


class SourceUnavailable(MovierecError):
    """A download or external source could not be reached."""


class DataQualityError(MovierecError):
    """The data loaded fails a quality check (too many rejected rows, too few ratings)."""


def shorten(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut): reasons, log lines, messages."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(exc: BaseException, limit: int = MAX_ERROR_LINE_CHARS) -> str:
    """``Type: first line of the message``, at most ``limit`` characters: an error as a log line or an answer
    can show it (no traceback; a database error quoting a huge value stays short)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return shorten(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, limit)
