"""movierec's pipeline: the work the DAG, the CLI and the API share, as packages ordered as layers.

``core`` → ``ingest`` → ``features`` → ``models`` → ``evaluation`` → ``registry`` → ``batch`` →
``orchestration`` → ``cli``: a module imports only from the layers before its own (checked by the
import-linter contracts in ``pyproject.toml``). Package ``__init__`` files import nothing, so importing one
name never loads a whole layer.
"""
