"""``python -m pipeline.cli``: the same command line as ``movierec``."""

from pipeline.cli import main

main()
