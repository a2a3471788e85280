"""The error answers each route documents in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from model_server.schemas import ErrorBody

_TEXT = {
    404: "Unknown user or movie",
    413: "Request body too large",
    422: "Invalid input: the detail names each bad field",
    503: "Database unreachable, no batch published or no model loaded yet (retry later)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _TEXT[code]} for code in codes}
