# The project image: the pipeline and its CLI, the Airflow components (API server, scheduler with the
# LocalExecutor running the tasks, DAG processor, Celery workers) and the model server. One image, one command
# per service (see docker-compose.yml).
# torch: from TORCH_INDEX_URL when that index answers (default PyTorch's CPU wheels, a ~1 GB image), else from
# PyPI, so the build works wherever PyPI does; PyPI's Linux wheel is a CUDA build (several GB larger, and it
# also runs on a GPU). TORCH_INDEX_URL= (empty) goes straight to PyPI; docker-compose.gpu.yml asks for
# PyTorch's CUDA index.
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Optional extras of the project (pyproject.toml), e.g. EXTRAS=kubernetes for the KubernetesExecutor.
ARG EXTRAS=
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MOVIEREC_HOME=/var/lib/movierec \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    HF_HUB_OFFLINE=1

# implicit (ALS, BPR, logistic MF) is built with OpenMP against the system's libgomp, which the slim image
# lacks; torch's wheels bring their own copy, so a process that imported torch first hid the gap.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, at the version constraints.txt pins; the rest resolves around it. A short timeout and one
# retry keep an unreachable index from stalling the build before the PyPI fallback.
COPY constraints.txt ./
RUN torch="$(grep -E '^torch==' constraints.txt)" \
    && if [ -n "$TORCH_INDEX_URL" ] \
          && pip install --timeout 15 --retries 1 --index-url "$TORCH_INDEX_URL" "$torch"; then :; \
       else echo "torch from PyPI (${TORCH_INDEX_URL:-no index given} did not answer)" \
          && pip install "$torch"; fi
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY database ./database
COPY model_server ./model_server
RUN pip install -c constraints.txt ".${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 50000 --create-home --home-dir /home/movierec movierec \
    && mkdir -p "$MOVIEREC_HOME" "$AIRFLOW_HOME/logs" "$AIRFLOW_HOME/auth" \
    && chown -R movierec "$MOVIEREC_HOME" "$AIRFLOW_HOME"
COPY dags ./dags

# No VOLUME line: docker-compose.yml mounts named volumes where data lives; a VOLUME here would give every
# service that mounts fewer paths a fresh anonymous volume per `up`, which `down -v` cannot remove.
USER movierec
CMD ["movierec", "--help"]
