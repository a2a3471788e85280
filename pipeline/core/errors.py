"""Errors a user can act on: the CLI prints their message as a one-line reason and exits non-zero."""


class MovierecError(Exception):
    """Base class for expected failures (bad input, unreachable source, missing server)."""


class InputError(MovierecError):
    """The input is unusable as a whole: missing file, unknown layout, empty file."""


class SourceUnavailable(MovierecError):
    """A download or external source could not be reached."""


class DataQualityError(MovierecError):
    """The data loaded fails a quality check (too many rejected rows, too few ratings)."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: an error as a log line or an answer can show it (no traceback)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
