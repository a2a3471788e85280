"""Servers on loopback for the end-to-end tests: the API app under uvicorn in a thread of the test process
(``LiveServer``), and a TCP proxy in front of PostgreSQL that a test can take away and bring back
(``PgProxy``). The fixtures that start them are in ``tests/model_server/conftest.py``."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from sqlalchemy.engine import make_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``create_app(...)`` under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from model_server.http import uvicorn_config

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(  # configured as `movierec serve` configures it
            uvicorn_config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = (
            time.monotonic() + 300
        )  # start-up loads MLflow, the champion and MiniLM: slow on a busy machine
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class PgProxy:
    """A TCP forwarder on loopback in front of PostgreSQL (its Unix socket or host:port).

    ``stop()`` closes the listener and every forwarded connection, as a crashed or unreachable database
    would look to a client; ``start()`` listens again on the same port."""

    def __init__(self, target_url: str) -> None:
        url = make_url(target_url)
        host = url.query.get("host") or url.host or "localhost"
        host = host if isinstance(host, str) else host[0]
        port = url.port or 5432
        self.target: Any = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        self.port = free_port()
        self.url = url.set(host="127.0.0.1", port=self.port, query={}).render_as_string(hide_password=False)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(
                    socket.SHUT_RDWR
                )  # wakes the thread blocked in accept() (close alone does not)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            family = socket.AF_UNIX if isinstance(self.target, str) else socket.AF_INET
            upstream = socket.socket(family)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
