"""Write stream chunks to a viewer's socket without copying them.

``transport.write()`` appends to the transport's buffer and sends it on a
later reactor iteration, where Twisted joins the buffered pieces into one
new bytes object (a copy per viewer) and sends at most 128 KiB per
iteration. With thousands of viewers of one channel that copy and the
per-iteration limit dominate the relay's cost.

:func:`direct_writer` returns a write function for a ``twisted.web``
response on a plain TCP connection that, while the transport has nothing
buffered, hands the shared chunk straight to ``socket.sendmsg`` (with the
HTTP chunked framing as separate iovecs, so the chunk itself is never
copied). Whatever the kernel does not take goes through the transport's
ordinary ``writeSequence``, which keeps the byte order, buffers it and
pauses the producer exactly as before. A few bytes the transport already
holds (a new viewer's response headers) are sent in the same call. Anything unusual (TLS, HTTP/2, test
transports, a closing connection) gets ``None`` or the ordinary path.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import tcp

__all__ = ["direct_writer"]

#: Bytes already buffered by the transport that a direct write takes over.
TAKE_OVER = 16 * 1024


def direct_writer(request: Any) -> Callable[[bytes], None] | None:
    """A zero-copy ``write`` for this response's body, or None.

    Call it after the response headers were written (``request.write(b"")``).
    """
    transport = getattr(request, "transport", None)
    if not isinstance(transport, tcp.Connection):
        return None
    sock = getattr(transport, "socket", None)
    if sock is None or not hasattr(sock, "sendmsg"):
        return None
    if not all(hasattr(transport, name)
               for name in ("dataBuffer", "offset", "_tempDataBuffer", "_tempDataLen")):
        return None
    if not getattr(request, "startedWriting", False) or getattr(request, "finished", False):
        return None
    chunked = bool(getattr(request, "chunked", False))
    sendmsg = sock.sendmsg

    def write(data: bytes) -> None:
        size = len(data)
        if not size or getattr(request, "_disconnected", False):
            return
        request.sentLength += size
        pieces = [b"%x\r\n" % size, data, b"\r\n"] if chunked else [data]
        if not transport.connected or transport.disconnecting:
            return
        buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if buffered > TAKE_OVER:
            transport.writeSequence(pieces)
            return
        if buffered:
            # Only a little is waiting (the response headers of a viewer
            # that just joined): send it with this piece instead of leaving
            # it, and the burst behind it, for the next reactor turn.
            head = [bytes(memoryview(transport.dataBuffer)[transport.offset:])]
            head.extend(transport._tempDataBuffer)
            transport.dataBuffer, transport.offset = b"", 0
            transport._tempDataBuffer, transport._tempDataLen = [], 0
            pieces = [b"".join(head)] + pieces
        try:
            sent = sendmsg(pieces)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let the transport meet the error on its own write and close.
            transport.writeSequence(pieces)
            return
        total = sum(len(piece) for piece in pieces)
        if sent < total:
            transport.writeSequence(_rest(pieces, sent))

    return write


def _rest(pieces: list[bytes], sent: int) -> list[bytes]:
    """What remains of ``pieces`` after the first ``sent`` bytes."""
    out = []
    for piece in pieces:
        if sent >= len(piece):
            sent -= len(piece)
            continue
        out.append(piece[sent:] if sent else piece)
        sent = 0
    return out
