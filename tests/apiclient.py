"""A tiny raw HTTP client for the API tests: status, headers and the body
exactly as sent (no transparent gzip decoding, unlike treq)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.client import FileBodyProducer
from io import BytesIO

_pool = HTTPConnectionPool(reactor, persistent=False)
_agent = Agent(reactor, pool=_pool)


@dataclass
class Answer:
    code: int
    headers: Headers
    body: bytes
    #: the Content-Length sent (the client takes it out of the headers), or None
    length: int | None = None

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode("latin-1") if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def all_headers(self) -> str:
        return "\n".join(f"{k.decode()}: {v.decode('latin-1')}"
                         for k, vs in self.headers.getAllRawHeaders() for v in vs)


async def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None) -> Answer:
    h = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None
    response = await _agent.request(method.encode(), url.encode(), h, producer)
    data = await readBody(response) if method != "HEAD" else b""
    length = response.length if isinstance(response.length, int) else None
    return Answer(response.code, response.headers, data, length)


async def api(base: str, user: str = "alice", password: str = "alicepw", **params: Any) -> Answer:
    query = urlencode({"username": user, "password": password, **{k: str(v) for k, v in params.items()}})
    return await fetch(f"{base}/player_api.php?{query}")


def query(user: str = "alice", password: str = "alicepw", **params: Any) -> str:
    return urlencode({"username": user, "password": password, **{k: str(v) for k, v in params.items()}})
