"""Streaming big response bodies (playlists, the guide) with back-pressure.

:class:`ThreadedBody` is a push producer registered on the request: it asks
a blocking *source* (a callable run in the thread pool) for the next chunk,
writes it, and asks for the next one only while the client keeps up.  So a
100 MB playlist is never held in memory, the reactor thread never reads a
file or compresses, and a slow client costs one chunk of memory.

:class:`MarkerStream` is the usual source: a file read in chunks, cached
placeholders (``@XRELAY_BASE@``...) replaced on the fly, optionally
gzip-compressed.

:class:`MemoryBody` writes a body already in memory (a prepared answer of
a megabyte, shared by every client that asks) straight from that one bytes
object to the socket (:mod:`xrelay.http.sockwrite`): nothing is joined or
copied per request, and a slow client holds no buffer of its own.
"""

from __future__ import annotations

import zlib
from typing import Any, BinaryIO, Callable

from twisted.internet import defer, threads
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from xrelay.http.request import web_request
from xrelay.http.sockwrite import direct_writer

__all__ = ["ThreadedBody", "MemoryBody", "MarkerReplacer", "MarkerStream", "CHUNK", "DIRECT_FROM"]

log = Logger()

#: Bytes read from disk per step.
CHUNK = 256 * 1024

#: Bodies from this size on are worth :class:`MemoryBody` (below it,
#: Twisted's own buffered write costs less than a producer).
DIRECT_FROM = 64 * 1024


class MarkerReplacer:
    """Replaces placeholders in a byte stream, even across chunk boundaries.

    Every placeholder starts with ``@``; a chunk's tail that could be the
    start of one is held back until the next chunk.
    """

    def __init__(self, replacements: list[tuple[bytes, bytes]]) -> None:
        # "@" in a value (a public_url with user info...) is written encoded
        self.replacements = [(k, v.replace(b"@", b"%40")) for k, v in replacements if k != v]
        self.hold = max((len(k) for k, _ in self.replacements), default=1) - 1
        self.carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.carry + chunk if self.carry else chunk
        if not self.replacements:
            self.carry = b""
            return data
        # Complete placeholders first (the values never contain "@"), then
        # hold back a tail that may be the start of one cut in two.
        data = self._replace(data)
        cut = len(data)
        at = data.find(b"@", max(0, len(data) - self.hold))
        while at >= 0:
            tail = data[at:]
            if any(len(tail) < len(k) and k.startswith(tail) for k, _ in self.replacements):
                cut = at
                break
            at = data.find(b"@", at + 1)
        self.carry = data[cut:]
        return data[:cut] if cut < len(data) else data

    def flush(self) -> bytes:
        data, self.carry = self.carry, b""
        return self._replace(data)

    def _replace(self, data: bytes) -> bytes:
        for key, value in self.replacements:
            if key in data:
                data = data.replace(key, value)
        return data


class MarkerStream:
    """A blocking chunk source over a sequence of files (run in a thread)."""

    def __init__(self, paths: list[str], replacements: list[tuple[bytes, bytes]],
                 gzip: bool = False, level: int = 1, head: bytes = b"") -> None:
        self.paths = list(paths)
        self.replacer = MarkerReplacer(replacements)
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31) if gzip else None
        self.head = head
        self.file: BinaryIO | None = None
        self.finished = False

    def __call__(self) -> bytes | None:
        """The next chunk of the body, or None at the end."""
        while not self.finished:
            out = b""
            if self.head:
                out, self.head = self.replacer.feed(self.head), b""
            else:
                if self.file is None:
                    if not self.paths:
                        out = self.replacer.flush()
                        if self.compressor is not None:
                            out = self.compressor.compress(out) + self.compressor.flush()
                        self.finished = True
                        return out or None
                    self.file = open(self.paths.pop(0), "rb")
                raw = self.file.read(CHUNK)
                if not raw:
                    self.file.close()
                    self.file = None
                    continue
                out = self.replacer.feed(raw)
            if self.compressor is not None:
                out = self.compressor.compress(out)
            if out:
                return out
        return None

    def close(self) -> None:
        self.finished = True
        if self.file is not None:
            self.file.close()
            self.file = None


@implementer(IPushProducer)
class _Body:
    """What both bodies share: registered on *request* as a push producer,
    ``done`` fires when the body is complete or the client left."""

    def __init__(self, request: IRequest) -> None:
        self.request = web_request(request)
        self.paused = False
        self.stopped = False
        self.done: defer.Deferred[None] = defer.Deferred(lambda _: self.stopProducing())

    def _register(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(self._client_left)

    def _client_left(self, reason: Failure) -> None:
        # Klein saw the connection go before this runs, so it will not try
        # to finish the request when ``done`` fires.
        self.stopProducing()
        self._done()

    def _done(self) -> None:
        if not self.done.called:
            self.done.callback(None)  # the route's caller (Klein) finishes the request

    def _finish(self) -> None:
        self.stopped = True
        self._stopped()
        try:
            self.request.unregisterProducer()
        except RuntimeError:
            pass  # the client left
        self._done()

    def _stopped(self) -> None:
        """The body will not be written on (release what it holds)."""

    # -- IPushProducer ---------------------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._write_on()

    def _write_on(self) -> None:
        raise NotImplementedError

    def stopProducing(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.request.unregisterProducer()
        except (RuntimeError, AttributeError):
            pass
        self._stopped()


class ThreadedBody(_Body):
    """Writes what *source* produces (in the thread pool) to *request*."""

    def __init__(self, request: IRequest, source: Callable[[], bytes | None],
                 close: Callable[[], Any] | None = None) -> None:
        super().__init__(request)
        self.source = source
        self.close_source = close
        self.reading = False
        self.sent = 0

    def start(self) -> defer.Deferred[None]:
        """Begin streaming; the Deferred fires when the body is complete (or
        the client left): return it from a Klein route, which then finishes
        the request.  Cancelling it stops the stream."""
        self._register()
        self._next()
        return self.done

    def _write_on(self) -> None:
        self._next()

    def _next(self) -> None:
        if self.reading or self.paused or self.stopped:
            return
        self.reading = True
        d = threads.deferToThread(self.source)
        d.addCallbacks(self._got, self._failed)

    def _got(self, chunk: bytes | None) -> None:
        self.reading = False
        if self.stopped:
            self._stopped()
            return
        if chunk is None:
            self._finish()
            return
        self.sent += len(chunk)
        self.request.write(chunk)
        self._next()

    def _failed(self, failure: Failure) -> None:
        self.reading = False
        log.warn("cannot stream a response body: {error}", error=str(failure.value))
        self.stopProducing()
        channel = getattr(self.request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def _stopped(self) -> None:
        # The source is closed in the thread pool, once no read is running.
        if self.close_source is not None and not self.reading:
            close, self.close_source = self.close_source, None
            threads.deferToThread(close).addErrback(lambda _: None)


class MemoryBody(_Body):
    """Writes *body* to *request* from memory, without copying it.

    The response headers must be set (Content-Length included); the body
    goes out as the socket takes it, resumed by the transport when the
    socket is writable again.  Where the transport is not a plain TCP one
    (TLS, tests' transports) the body is written the ordinary way.
    """

    def __init__(self, request: IRequest, body: bytes) -> None:
        super().__init__(request)
        self.body = body
        self.view = memoryview(body)
        self.offset = 0

    def start(self) -> defer.Deferred[None]:
        """Begin writing; the Deferred fires when the body is sent (or the
        client left): return it from a Klein route, which then finishes the
        request.  Cancelling it stops the write."""
        request = self.request
        request.write(b"")  # the headers
        writer = direct_writer(request)
        if writer is None:
            request.write(self.body)
            self._done()
            return self.done
        self.writer = writer
        self._register()
        self._write_on()
        return self.done

    def _write_on(self) -> None:
        view, size = self.view, len(self.view)
        while self.offset < size and not self.paused and not self.stopped:
            offered = size - self.offset
            taken = self.writer(view[self.offset:])
            self.offset += taken
            if taken < offered:
                return  # the writer paused us until the socket is writable
        if self.offset >= size and not self.stopped:
            self._finish()
