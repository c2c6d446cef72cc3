"""Helpers for the movie, catch-up and HLS tests: a raw HTTP client that
shows every header byte (and can stop reading), bounded polling, leak checks."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from demo_helpers import wait_until, within


class RawResponse(Protocol):
    """Sends one HTTP/1.1 request (Connection: close) and keeps every byte."""

    def __init__(self, request: bytes, *, read: bool = True) -> None:
        self.request = request
        self.read = read
        self.data = bytearray()
        self.closed: Deferred[RawResponse] = Deferred()
        self.head_seen: Deferred[RawResponse] = Deferred()
        self.lost = False

    def connectionMade(self) -> None:
        self.transport.write(self.request)
        if not self.read:
            self.transport.pauseProducing()  # a client that stops reading

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.head_seen.called and b"\r\n\r\n" in self.data:
            self.head_seen.callback(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        if not self.head_seen.called:
            self.head_seen.callback(self)
        self.closed.callback(self)

    # -- parsed view ------------------------------------------------------

    @property
    def head(self) -> bytes:
        return bytes(self.data).split(b"\r\n\r\n", 1)[0]

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    @property
    def headers(self) -> dict[bytes, bytes]:
        out = {}
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            out[name.strip().lower()] = value.strip()
        return out

    @property
    def body(self) -> bytes:
        raw = bytes(self.data).split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.data else b""
        if self.headers.get(b"transfer-encoding") == b"chunked":
            return _dechunk(raw)
        return raw

    def stop(self) -> None:
        if not self.lost:
            self.transport.abortConnection()


def _dechunk(raw: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        size = int(raw[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


async def raw_request(port: int, path: str, *, method: str = "GET",
                      headers: dict[str, str] | None = None, read: bool = True,
                      wait: str = "closed") -> RawResponse:
    """Open a connection to xrelay, send one request; wait for ``closed``
    (the whole answer), ``head`` (the status line and headers) or nothing."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    proto = RawResponse(("\r\n".join(lines) + "\r\n\r\n").encode(), read=read)
    await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto),
                 what=f"connecting for {path}")
    if wait == "closed":
        await within(proto.closed, 30, what=f"the end of the answer to {method} {path}")
    elif wait == "head":
        await within(proto.head_seen, 30, what=f"the head of the answer to {method} {path}")
    return proto


async def poll(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    """Wait until ``condition()`` holds (only where no event exists to wait on)."""
    await wait_until(condition, timeout, step)


def assert_no_secrets(relay: Any, *answers: RawResponse) -> None:
    """No provider host, user name or password in any byte of these answers."""
    username, password, hostport = relay.upstream_secrets
    for answer in answers:
        data = bytes(answer.data)
        for secret in (password, hostport, username):
            assert secret.encode() not in data, (secret, data[:300])
        assert b"location" not in answer.headers
        assert b"set-cookie" not in answer.headers


class LogCapture:
    """Every log line emitted while active (``with LogCapture() as logs:``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        self.lines.append(text)

    def __enter__(self) -> "LogCapture":
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.removeObserver(self)

    def assert_no_secrets(self, relay: Any) -> None:
        username, password, hostport = relay.upstream_secrets
        for line in self.lines:
            for secret in (password, hostport, f"/{username}/", f"={username}"):
                assert secret not in line, line
