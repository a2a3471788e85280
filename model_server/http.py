"""The server's HTTP/1.1 edge under uvicorn: a bound on the request head, and the one uvicorn configuration.

uvicorn's httptools protocol (the fast parser, the default with ``uvicorn[standard]``) has no limit on a
request's head: a 32 MB header is read whole (httptools gathers a header value in memory until it ends) and
answered. ``BoundedHttpToolsProtocol`` counts the request line and headers of each request as they arrive
and answers ``431 Request Header Fields Too Large`` (JSON ``{"detail": ...}``), closing the connection, once
they pass ``MAX_HEAD_BYTES``: a head that never ends stops being read after at most one more network read.
With uvicorn's h11 protocol the same bound is its ``h11_max_incomplete_event_size`` (h11 answers 400).

``uvicorn_config`` is how ``movierec serve`` (and the tests' live server) run the app.
"""

from __future__ import annotations

import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024  # request line plus headers, per request


class _HeadTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a 431 for request heads over ``MAX_HEAD_BYTES``."""

    max_head_bytes = MAX_HEAD_BYTES

    def connection_made(self, transport: Any) -> None:
        self._in_head = True  # between a request's first byte and the end of its headers
        self._head_bytes = 0  # what the parser handed over of this head (line and finished headers)
        self._head_reads = 0  # bytes of the reads that ended inside this head (also a header not yet ended)
        self._too_large = False
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self._too_large and not self.transport.is_closing():
            self._head_reads += len(data)
            if self._head_reads > self.max_head_bytes:
                self._too_large = True
                self.send_400_response("")

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes, self._head_reads = True, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge  # the parser stops; uvicorn answers through send_400_response

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        body = json.dumps({"detail": f"request line and headers larger than {self.max_head_bytes} bytes"})
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(b"".join(head) + body.encode())
        self.transport.close()


def uvicorn_config(app: Any, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """How the API runs under uvicorn: the bounded httptools protocol (and the same bound for h11)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **options,
    )
