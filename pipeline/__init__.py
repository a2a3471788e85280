"""movierec's pipeline: the work the DAG, the CLI and the API share, as packages ordered as layers.

``core`` → ``ingest`` → ``features`` → ``models`` → ``evaluation`` → ``registry`` → ``batch`` →
``orchestration`` → ``cli``: a module imports only from the layers before its own (checked by the
import-linter contracts in ``pyproject.toml``). Package ``__init__`` files import nothing, so importing one
name never loads a whole layer. This one only sets process-wide environment that is read once: usage
telemetry off (``TELEMETRY_OPT_OUTS``) before anything imports MLflow, which decides at import time, and
matrix products whose floats do not depend on the thread count (``REPRODUCIBLE_MATH``) before torch's first.
"""

import os as _os

from pipeline.core.defaults import REPRODUCIBLE_MATH as _REPRODUCIBLE_MATH
from pipeline.core.defaults import TELEMETRY_OPT_OUTS as _TELEMETRY_OPT_OUTS

for _name, _value in {**_TELEMETRY_OPT_OUTS, **_REPRODUCIBLE_MATH}.items():
    _os.environ.setdefault(_name, _value)
