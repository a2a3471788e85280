"""movierec's pipeline: the work the DAG, the CLI and the API share, as packages ordered as layers.

``core`` → ``ingest`` → ``features`` → ``models`` → ``evaluation`` → ``registry`` → ``batch`` →
``orchestration`` → ``cli``: a module imports only from the layers before its own (checked by the
import-linter contracts in ``pyproject.toml``). Package ``__init__`` files import nothing, so importing one
name never loads a whole layer. This one only switches usage telemetry off (``TELEMETRY_OPT_OUTS``) before
anything imports MLflow, which decides at import time.
"""

import os as _os

from pipeline.core.defaults import TELEMETRY_OPT_OUTS as _TELEMETRY_OPT_OUTS

for _name, _value in _TELEMETRY_OPT_OUTS.items():
    _os.environ.setdefault(_name, _value)
