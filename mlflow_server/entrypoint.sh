#!/bin/sh
# The MLflow tracking server of the stack: runs and the model registry in PostgreSQL, artifacts on a volume,
# served through the tracking server itself (clients need no access to the volume).
#   MLFLOW_BACKEND_STORE_URI      required, e.g. postgresql+psycopg2://mlflow:PASSWORD@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  where artifacts are kept (default /mlflow/artifacts, the volume)
#   MLFLOW_HOST / MLFLOW_PORT     bind address (default 0.0.0.0:5000)
#   MLFLOW_WORKERS                server worker processes (default 2)
#   MLFLOW_ALLOWED_HOSTS          Host headers accepted (DNS-rebinding protection); default: the service name
#                                 and localhost on any port
# Extra arguments are passed to `mlflow server`.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg2://USER:PASSWORD@HOST:5432/mlflow)}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}"
case "$artifacts" in
    *://*) ;;                  # an object store URI: nothing to create
    *) mkdir -p "$artifacts" ;;
esac
port="${MLFLOW_PORT:-5000}"
exec mlflow server \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --serve-artifacts \
    --artifacts-destination "$artifacts" \
    --host "${MLFLOW_HOST:-0.0.0.0}" \
    --port "$port" \
    --workers "${MLFLOW_WORKERS:-2}" \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:$port,localhost,localhost:*,127.0.0.1,127.0.0.1:*}" \
    "$@"
