"""Errors a user can act on: the CLI prints their message as a one-line reason and exits non-zero."""


class MovierecError(Exception):
    """Base class for expected failures (bad input, unreachable source, missing server)."""


class InputError(MovierecError):
    """The input is unusable as a whole: missing file, unknown layout, empty file."""


class SourceUnavailable(MovierecError):
    """A download or external source could not be reached."""


class DataQualityError(MovierecError):
    """The data loaded fails a quality check (too many rejected rows, too few ratings)."""
