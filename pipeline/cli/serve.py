"""``movierec serve``: the REST API (``model_server``) under uvicorn, configured by the usual settings."""

from __future__ import annotations

import logging
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request (costs throughput)")
    ] = False,
) -> None:
    """Serve the published lists, on-demand scoring and the web UI over HTTP (OpenAPI at /docs, pages at
    /ui/); Ctrl-C stops it.

    Connects to the app database as the read-only role movierec_reader (READER_DATABASE_URL overrides);
    its one write, a user's dismissal of a movie, goes through movierec_feedback (FEEDBACK_DATABASE_URL
    overrides), which may only insert into dismissals. It loads the champion from the MLflow registry,
    checking for a newer one every MOVIEREC_MODEL_POLL_SECONDS (30 by default).
    """
    import os

    import torch
    import uvicorn

    from model_server.app import create_app
    from model_server.http import uvicorn_config

    logging.getLogger("model_server").setLevel(logging.INFO)
    # Half the cores for scoring, the rest for the event loop and the database: on a small machine, torch's
    # spinning worker threads competing with them cost more than a second thread gains.
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    # The request head bounded (431 over model_server.http.MAX_HEAD_BYTES, never read whole).
    config = uvicorn_config(
        create_app(),
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
