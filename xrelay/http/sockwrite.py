"""Write response bodies (shared stream chunks, prepared answers) to a TCP socket without copying them.

``transport.write()`` appends to the transport's buffer; Twisted sends it on
a later reactor turn, joins buffered pieces into a new bytes object (a copy
per viewer) and sends at most 128 KiB per turn. With thousands of viewers
of one channel that is most of the relay's cost, and a burst of sockets
becoming writable at once makes one reactor turn very long.

:class:`DirectWriter` sends a viewer's data straight from the shared chunk
with ``socket.sendmsg`` (the HTTP chunked framing travels as separate
iovecs). It returns how many bytes the kernel took; when that is less than
offered, the viewer keeps its cursor where the kernel stopped and the
writer asks the transport to tell the viewer's producer when the socket is
writable again (the transport's own producer machinery: ``producerPaused``
and ``startWriting()``). Nothing of the stream is ever buffered in user
space per viewer. The few bytes the transport already holds (a new viewer's
response headers) are sent in the same call.

:func:`direct_writer` returns ``None`` for anything unusual (TLS, HTTP/2,
test transports); the fan-out then uses ``request.write``.
"""

from __future__ import annotations

import socket
from typing import Any, Sequence

from twisted.internet import tcp
from twisted.logger import Logger

__all__ = ["DirectWriter", "direct_writer", "bound_send_buffer", "no_delay", "send_now"]

#: A viewer socket's kernel send buffer. Fixed rather than autotuned (up to
#: several MiB each on loopback or fast LANs), so that a slow or stalled
#: viewer's kernel memory is bounded too: about a second at 4 Mbit/s, a
#: quarter second at 16 Mbit/s, ample for a LAN.
VIEWER_SEND_BUFFER = 512 * 1024

#: Bytes already buffered by the transport that a direct write takes over.
TAKE_OVER = 16 * 1024
_CRLF = b"\r\n"

#: The TCP transport's internals a DirectWriter uses (checked, on real
#: transports, by tests/test_twisted_internals.py; setup.cfg pins Twisted).
_NEEDED = ("dataBuffer", "offset", "_tempDataBuffer", "_tempDataLen", "producerPaused",
           "startWriting")
#: What :func:`send_now` uses besides (checked the same way).
_NEEDED_TO_SEND = ("doWrite", "disconnecting", "_writeDisconnecting")

log = Logger()
_warned: list[bool] = []


class DirectWriter:
    """Zero-copy writes of one HTTP response body to its TCP socket."""

    def __init__(self, request: Any, transport: tcp.Connection, chunked: bool) -> None:
        self.request = request
        self.transport = transport
        self.chunked = chunked
        self._sendmsg = transport.socket.sendmsg
        #: Framing bytes that must go out before any more data.
        self._tail = b""
        #: Data bytes still owed to the HTTP chunk being sent.
        self._frame_left = 0

    @property
    def mid_frame(self) -> bool:
        """True while an HTTP chunk is only partly sent (the body cannot be
        ended cleanly until it is completed)."""
        return bool(self._tail or self._frame_left)

    def __call__(self, data: bytes | memoryview) -> int:
        """Send what the socket takes of ``data``; return how much it took.

        The caller offers the unsent rest of the same data after a short
        write (the chunked framing relies on it).
        """
        size = len(data)
        if not size:
            return 0
        return self._send(self._frame(data, size), size)

    def send_many(self, buffers: Sequence[bytes | memoryview]) -> int:
        """Send what the socket takes of ``buffers``, in order, in one system
        call; return how much it took.  A chunked body sends the first buffer
        only (each HTTP chunk frames one buffer).

        One call per few hundred KiB instead of one per buffer: on loopback
        and fast LANs a ``sendmsg`` costs about as much per call as per
        100 KiB copied."""
        if self.chunked or len(buffers) == 1:
            return self(buffers[0])
        size = sum(len(b) for b in buffers)
        if not size:
            return 0
        return self._send(list(buffers), size)

    def _send(self, framing: list[bytes | memoryview], size: int) -> int:
        """Send ``framing`` (the body's ``size`` bytes of data and their
        framing); return how many data bytes the socket took."""
        transport = self.transport
        if not transport.connected or transport.disconnecting:
            return size  # the connection is going away: drop
        pieces: list[bytes | memoryview] = []
        buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if buffered:
            if buffered > TAKE_OVER:
                # Somebody else wrote a lot through the transport: keep the
                # order by going the ordinary way, this once.
                transport.writeSequence([bytes(p) for p in framing])
                self._tail, self._frame_left = b"", 0
                self.request.sentLength += size
                return size
            head = [bytes(memoryview(transport.dataBuffer)[transport.offset:])]
            head.extend(transport._tempDataBuffer)
            transport.dataBuffer, transport.offset = b"", 0
            transport._tempDataBuffer, transport._tempDataLen = [], 0
            pieces.append(b"".join(head))
        pieces.extend(framing)
        before = len(pieces[0]) if buffered else 0
        try:
            sent = self._sendmsg(pieces)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let the transport meet the error on its next write and close.
            transport.startWriting()
            return size
        if sent < before:
            # Not even the taken-over headers went out: give them back.
            transport.dataBuffer = bytes(memoryview(pieces[0])[sent:])
            sent = 0
        else:
            sent -= before
        taken = self._account(framing, sent, size) if self.chunked else min(sent, size)
        self.request.sentLength += taken
        if taken < size or self._tail or transport.dataBuffer:
            self._wait_writable()
        return taken

    def _frame(self, data: bytes | memoryview, size: int) -> list[bytes | memoryview]:
        if not self.chunked:
            return [data]
        out: list[bytes | memoryview] = [self._tail] if self._tail else []
        if not self._frame_left:
            out.append(b"%x\r\n" % size)
            self._frame_left = size
        out.append(data)
        out.append(_CRLF)
        return out

    def _account(self, framing: list[bytes | memoryview], sent: int, size: int) -> int:
        """Consume ``sent`` bytes of a chunked body's ``framing``; keep what
        framing is left in ``_tail``; return the data bytes taken."""
        data_index = len(framing) - 2
        taken = 0
        tail: list[bytes] = []
        for index, piece in enumerate(framing):
            length = len(piece)
            used = min(sent, length)
            sent -= used
            if index == data_index:
                taken = used
                if used < length:
                    # The rest of the data is offered again by the caller;
                    # nothing after it has been sent.
                    break
            elif used < length:
                tail.append(bytes(memoryview(piece)[used:]))
        self._frame_left -= taken
        self._tail = b"".join(tail)
        return taken

    def _wait_writable(self) -> None:
        """Pause the producer until the transport sees the socket writable."""
        transport = self.transport
        producer = transport.producer
        if producer is not None and not transport.producerPaused:
            transport.producerPaused = True
            producer.pauseProducing()  # type: ignore[attr-defined]  # registered streaming: an IPushProducer
        transport.startWriting()


def direct_writer(request: Any) -> DirectWriter | None:
    """A :class:`DirectWriter` for this response's body, or None.

    Call it after the response headers were written (``request.write(b"")``).
    """
    transport = getattr(request, "transport", None)
    if not isinstance(transport, tcp.Connection):
        return None
    sock = getattr(transport, "socket", None)
    if sock is None or not hasattr(sock, "sendmsg"):
        return None
    missing = [name for name in _NEEDED if not hasattr(transport, name)]
    if missing:
        if not _warned:
            _warned.append(True)
            log.warn("this Twisted's TCP transport has no {missing}: viewers are written the "
                     "slow way (install a Twisted release setup.cfg allows)", missing=", ".join(missing))
        return None
    if not getattr(request, "startedWriting", False) or getattr(request, "finished", False):
        return None
    return DirectWriter(request, transport, bool(getattr(request, "chunked", False)))


def bound_send_buffer(request: Any, size: int = VIEWER_SEND_BUFFER) -> None:
    """Fix the kernel send buffer of this response's TCP socket."""
    sock = getattr(getattr(request, "transport", None), "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        pass


def no_delay(request: Any) -> None:
    """Send this response's small writes at once (TCP_NODELAY).

    An HLS player asks for its playlist on the keep-alive connection that
    just carried a segment; with Nagle's algorithm the small answer would
    wait for the ACK of that segment's last bytes, which the player's
    kernel delays (up to 40 ms on Linux)."""
    sock = getattr(getattr(request, "transport", None), "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def send_now(request: Any) -> None:
    """Send what this response's TCP transport holds now, rather than when
    the reactor next polls the socket.

    ``transport.write()`` only buffers: a small answer (an HLS playlist)
    finished while the reactor handles a batch of events goes out on the
    next pass, after that pass's writes to every other client, which under
    load is a whole reactor turn later.  This does the transport's own send
    (``doWrite``) at once; what the socket does not take, and any error,
    the transport handles on its next pass as usual.  A connection that is
    closing is left to the reactor (its close follows the last byte)."""
    transport = getattr(request, "transport", None)
    if not isinstance(transport, tcp.Connection) or not transport.connected:
        return
    if any(not hasattr(transport, name) for name in _NEEDED + _NEEDED_TO_SEND):
        return
    if transport.disconnecting or transport._writeDisconnecting:
        return
    if len(transport.dataBuffer) - transport.offset + transport._tempDataLen:
        transport.doWrite()
