"""The HTTP edge of the live server (uvicorn configured as `movierec serve` configures it): no redirect built
from the Host header, a bounded request head, and a schema that allows exactly the text the server accepts."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from model_server.app import DOCS_ASSETS
from model_server.http import MAX_HEAD_BYTES

pytestmark = pytest.mark.e2e  # the live server over the weekly run's lists


def test_a_trailing_slash_is_a_404_and_never_a_redirect_to_the_host_header(api):
    for path in ("/users/3/recommendations/", "/health/", "/movies/50/similar/"):
        r = api.get(path, headers={"Host": "evil.example"})
        assert r.status_code == 404, (path, r.status_code)
        assert "location" not in r.headers and "evil.example" not in r.text
    assert api.get("/users/3/recommendations", headers={"Host": "evil.example"}).status_code == 200


def test_a_request_head_over_the_limit_is_a_431(api):
    r = api.get("/ping", headers={"X-Big": "a" * (MAX_HEAD_BYTES + 1)})
    assert r.status_code == 431 and "headers larger than" in r.json()["detail"]
    many = {f"X-H{k}": "b" * 400 for k in range(MAX_HEAD_BYTES // 400 + 1)}  # many headers, each small
    assert api.get("/ping", headers=many).status_code == 431
    assert api.get("/ping?" + "q" * (MAX_HEAD_BYTES + 1)).status_code == 431  # the request line counts
    assert api.get("/ping", headers={"X-Big": "a" * (MAX_HEAD_BYTES - 1024)}).status_code == 200
    assert api.get("/ping").status_code == 200  # the server goes on serving


def test_a_32_mb_header_is_refused_without_being_read_whole(live_api):
    total, sent, answer = 32 << 20, 0, b""
    with socket.create_connection(("127.0.0.1", live_api.port), timeout=60) as sock:
        head = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        chunk = b"a" * (1 << 16)
        try:
            sock.sendall(head)
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError:  # the server closed the connection: the rest was never read
            pass
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:  # a reset may swallow the answer itself
            pass
    assert sent < total, "the whole 32 MB header was read"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert httpx.get(f"{live_api.url}/ping").status_code == 200


def test_the_schema_allows_no_text_the_server_refuses(api):
    schema = api.get("/openapi.json").json()
    props = schema["components"]["schemas"]["NewMovieRequest"]["properties"]
    patterns = {
        "title": props["title"]["pattern"],
        "directors": props["directors"]["items"]["pattern"],
        "genres": props["genres"]["items"]["pattern"],
    }
    for name, pattern in patterns.items():
        for text in ("a\x00b", "\x00", "   ", ""):
            assert re.search(pattern, text) is None, (name, text)
        assert re.search(pattern, " Ünïcödé 🎬 ") is not None
    body = {"title": "T", "genres": ["Drama"], "user_id": 3}
    for field, value in (("title", "a\x00b"), ("directors", ["x\x00"]), ("title", " \t ")):
        r = api.post("/predict/new-movie", json={**body, field: value})
        assert r.status_code == 422 and field in r.json()["detail"], r.text
    r = api.post("/predict/new-movie", json={**body, "title": " Ünïcödé 🎬 ", "directors": ["Zoë"]})
    assert r.status_code == 200 and r.json()["title"] == "Ünïcödé 🎬"


def test_the_api_docs_load_every_asset_from_the_server_itself(api):
    for page in ("/docs", "/redoc"):
        r = api.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (
            page,
            r.status_code,
        )
        assert "://" not in r.text.replace("http://www.w3.org", ""), page  # no CDN, no fonts, no other host
        assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', r.text)
        assert any(a.endswith(".js") for a in assets), (page, assets)
        for asset in assets:
            assert asset.startswith(DOCS_ASSETS + "/"), (page, asset)
            got = api.get(asset)
            assert got.status_code == 200 and len(got.content) > 100, (asset, got.status_code)
    assert '"validatorUrl": null' in api.get("/docs").text
