"""The web UI: server-rendered pages under ``/ui/`` over the API's own data access and model.

``install(app)`` adds the pages' router and their static files (``/ui/static``) to the API app. Pages read
through the server's ``Database`` (the read-only role), show the served champion and score new movies with
the very code of ``POST /predict/new-movie``, and read a model version's evaluation report and plots from
its MLflow run (``model_server.web.artifacts``); see ``model_server.web.pages``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/ui/static"


def install(app: FastAPI) -> None:
    from model_server.web.artifacts import RunArtifacts
    from model_server.web.pages import router

    app.state.run_artifacts = RunArtifacts(app.state.settings)  # versions' reports and plots, cached
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="ui-static")
