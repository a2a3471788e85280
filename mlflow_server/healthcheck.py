"""Container health check: the tracking server answers /health with 200."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '5000')}/health"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
