# The project image: the pipeline and its CLI, the Airflow components (API server, scheduler with the
# LocalExecutor running the tasks, DAG processor) and the model server. One image, one command per service
# (see docker-compose.yml). CPU torch by default; a GPU image: docker-compose.gpu.yml sets
# TORCH_INDEX_URL to PyTorch's CUDA wheel index (e.g. .../whl/cu128).
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MOVIEREC_HOME=/var/lib/movierec \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    HF_HUB_OFFLINE=1

WORKDIR /app
# torch first, from the chosen index, at the version constraints.txt pins; the rest resolves around it.
COPY constraints.txt ./
RUN pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' constraints.txt)"
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY database ./database
COPY model_server ./model_server
RUN pip install -c constraints.txt . \
    && useradd --system --uid 50000 --create-home --home-dir /home/movierec movierec \
    && mkdir -p "$MOVIEREC_HOME" "$AIRFLOW_HOME/logs" "$AIRFLOW_HOME/auth" \
    && chown -R movierec "$MOVIEREC_HOME" "$AIRFLOW_HOME"
COPY dags ./dags

USER movierec
VOLUME ["/var/lib/movierec", "/opt/airflow/logs", "/opt/airflow/auth"]
CMD ["movierec", "--help"]
