"""Is a provider's movie or episode answer media, or an error page?

Providers label media badly: a third-party Xtream server sends ``.ts`` and
``.mkv`` movies as ``text/vnd.trolltech.linguist`` (what Python's
``mimetypes`` maps ``.ts`` to), others as ``application/octet-stream``.  So
the decision is taken from the answer's status and its first bytes:

* a known container signature is media: MPEG-TS (sync bytes at 188-byte
  strides, or 192 for M2TS, from any offset, so a ranged answer from the
  middle of a file is recognised too), MP4/MOV boxes, Matroska/WebM (EBML),
  AVI (RIFF), FLV, MPEG program/video streams, ASF, Ogg, MP3 and ADTS AAC;
* text is a page: HTML or XML, JSON, M3U playlists, plain text; so are an
  empty body and any body naming the provider (its host or credentials);
* other binary data (the middle of an MP4 file in a ranged answer) is
  media, unless the provider calls it a page (``text/html``, JSON, XML, a
  playlist type...: a compressed error page).

:class:`Sniffer` collects a body's first bytes until :func:`classify`
decides (at most :data:`SNIFF_BYTES`); :func:`media_type` gives the
Content-Type to send, from the provider's when it is a media type that
fits the container, else from the file's extension or the container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["SNIFF_BYTES", "Verdict", "Sniffer", "classify", "container_of", "page_kind",
           "media_type", "EXTENSION_TYPES", "CONTAINER_TYPES"]

#: The most bytes looked at before deciding.
SNIFF_BYTES = 2048
#: Bytes needed to tell text from binary when nothing else decided.
_TEXT_SAMPLE = 512
#: Transport stream packets that must line up before MPEG-TS is believed.
_TS_PACKETS = 3
#: Bytes wanted before deciding anything but a signature: three M2TS packets
#: from any offset, and a fair sample of text.
_DECIDE_BYTES = 192 * (_TS_PACKETS + 1) + 4

#: Content-Type by container (:func:`container_of`'s names).
CONTAINER_TYPES: dict[str, bytes] = {
    "mpegts": b"video/mp2t", "m2ts": b"video/mp2t", "mp4": b"video/mp4",
    "matroska": b"video/x-matroska", "avi": b"video/x-msvideo", "wav": b"audio/wav",
    "flv": b"video/x-flv", "mpeg": b"video/mpeg", "asf": b"video/x-ms-asf",
    "ogg": b"video/ogg", "mp3": b"audio/mpeg", "aac": b"audio/aac",
}
#: Content-Type by file extension (the ``.EXT`` of a movie or episode URL).
EXTENSION_TYPES: dict[str, bytes] = {
    "ts": b"video/mp2t", "m2ts": b"video/mp2t", "mts": b"video/mp2t",
    "mp4": b"video/mp4", "m4v": b"video/mp4", "m4a": b"audio/mp4", "mov": b"video/quicktime",
    "3gp": b"video/3gpp", "mkv": b"video/x-matroska", "mka": b"audio/x-matroska",
    "webm": b"video/webm", "avi": b"video/x-msvideo", "flv": b"video/x-flv",
    "mpg": b"video/mpeg", "mpeg": b"video/mpeg", "vob": b"video/mpeg",
    "wmv": b"video/x-ms-wmv", "asf": b"video/x-ms-asf", "ogv": b"video/ogg",
    "ogg": b"audio/ogg", "mp3": b"audio/mpeg", "aac": b"audio/aac",
}
#: Containers each extension may hold (a ``.mp4`` that is really MPEG-TS gets
#: the container's type, not the extension's).
_EXTENSION_CONTAINERS: dict[str, frozenset[str]] = {
    "ts": frozenset({"mpegts", "m2ts"}), "m2ts": frozenset({"mpegts", "m2ts"}),
    "mts": frozenset({"mpegts", "m2ts"}),
    "mp4": frozenset({"mp4"}), "m4v": frozenset({"mp4"}), "m4a": frozenset({"mp4"}),
    "mov": frozenset({"mp4"}), "3gp": frozenset({"mp4"}),
    "mkv": frozenset({"matroska"}), "mka": frozenset({"matroska"}), "webm": frozenset({"matroska"}),
    "avi": frozenset({"avi"}), "flv": frozenset({"flv"}),
    "mpg": frozenset({"mpeg", "mpegts"}), "mpeg": frozenset({"mpeg", "mpegts"}), "vob": frozenset({"mpeg"}),
    "wmv": frozenset({"asf"}), "asf": frozenset({"asf"}),
    "ogv": frozenset({"ogg"}), "ogg": frozenset({"ogg"}),
    "mp3": frozenset({"mp3"}), "aac": frozenset({"aac"}),
}
#: Media types (lower case, without parameters) that fit each container.
_CONTAINER_FITS: dict[str, frozenset[bytes]] = {
    "mpegts": frozenset({b"video/mp2t", b"video/mpeg", b"video/x-mpegts", b"video/vnd.dlna.mpeg-tts",
                         b"video/mpeg2", b"video/mp2p"}),
    "mp4": frozenset({b"video/mp4", b"video/quicktime", b"video/x-m4v", b"audio/mp4", b"audio/x-m4a",
                      b"video/3gpp", b"application/mp4"}),
    "matroska": frozenset({b"video/x-matroska", b"video/webm", b"audio/x-matroska", b"audio/webm",
                           b"video/matroska"}),
    "avi": frozenset({b"video/x-msvideo", b"video/avi", b"video/msvideo"}),
    "flv": frozenset({b"video/x-flv", b"video/flv"}),
    "mpeg": frozenset({b"video/mpeg", b"video/mp2p", b"video/mpeg2"}),
    "asf": frozenset({b"video/x-ms-asf", b"video/x-ms-wmv", b"audio/x-ms-wma"}),
    "ogg": frozenset({b"video/ogg", b"audio/ogg", b"application/ogg"}),
    "mp3": frozenset({b"audio/mpeg", b"audio/mp3"}),
    "aac": frozenset({b"audio/aac", b"audio/aacp", b"audio/x-aac"}),
}
_CONTAINER_FITS["m2ts"] = _CONTAINER_FITS["mpegts"]
_CONTAINER_FITS["wav"] = frozenset({b"audio/wav", b"audio/x-wav", b"audio/wave"})

#: Provider Content-Types that announce a page, whatever the bytes.
_PAGE_TYPES = (b"text/html", b"text/plain", b"json", b"xml", b"javascript", b"mpegurl",
               b"text/css", b"text/csv")

#: MP4/QuickTime box types that can open a file (or a fragment of one).
_MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
                        b"styp", b"moof", b"sidx", b"uuid"})


@dataclass(frozen=True)
class Verdict:
    """What a body is."""

    media: bool
    #: The container recognised (a :data:`CONTAINER_TYPES` key), or None.
    container: str | None = None
    #: Why, for the log: ``"mpegts"``, ``"HTML"``, ``"names the provider"``...
    reason: str = ""


def _ts_offset(head: bytes, stride: int, prefix: int) -> int | None:
    """The offset of the first sync byte of packets ``stride`` bytes long
    (the sync byte ``prefix`` bytes into each) when every packet that
    *head* holds has it and there are at least :data:`_TS_PACKETS`; else None."""
    for start in range(prefix, min(stride + prefix, len(head) - stride * (_TS_PACKETS - 1))):
        if head[start] == 0x47 and all(b == 0x47 for b in head[start::stride]):
            return start
    return None


def _mp3_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def container_of(head: bytes) -> str | None:
    """The container whose signature opens *head*, or None (unknown, or
    too few bytes: MPEG-TS needs three packets)."""
    if len(head) >= 4:
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return "matroska"
        if head[:4] == b"OggS":
            return "ogg"
        if head[:3] == b"FLV" and head[3] == 1:
            return "flv"
        if head[:4] == b"\x00\x00\x01\xba":
            return "mpeg"       # program stream pack header
        if head[:4] == b"\x00\x00\x01\xb3":
            return "mpeg"       # MPEG-1/2 video sequence header
        if head[:3] == b"ID3":
            return "mp3"
    if len(head) >= 12:
        if head[:4] == b"RIFF" and head[8:11] == b"AVI":
            return "avi"
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return "wav"
        size = int.from_bytes(head[:4], "big")
        if head[4:8] in _MP4_BOXES and (size in (0, 1) or size >= 8):
            return "mp4"
    if len(head) >= 16 and head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    if not _is_text(head[:_TEXT_SAMPLE]):  # packets of text never hold a stream
        if _ts_offset(head, 188, 0) is not None:
            return "mpegts"
        if _ts_offset(head, 192, 4) is not None:
            return "m2ts"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"            # ADTS: sync word, layer 0
    if _mp3_frame(head):
        return "mp3"
    return None


def page_kind(head: bytes) -> str | None:
    """What kind of page *head* opens (``"HTML"``, ``"JSON"``, ``"playlist"``
    or other ``"text"``), or None if it is not text."""
    start = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not start or not _is_text(head[:_TEXT_SAMPLE]):
        return None
    if start[:1] == b"<":
        return "HTML"
    if start[:1] in (b"{", b"["):
        return "JSON"
    if start[:7].upper() in (b"#EXTM3U", b"#EXTINF"):
        return "playlist"
    return "text"


def _is_text(sample: bytes) -> bool:
    """Whether *sample* reads as text (UTF-8, or mostly printable ASCII)."""
    if b"\x00" in sample:
        return False
    for cut in range(4):  # the sample may end inside a UTF-8 sequence
        try:
            text = sample[:len(sample) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        odd = sum(1 for ch in text if not (ch.isprintable() or ch in "\t\n\r\f\ufeff"))
        return odd * 50 <= len(text)
    printable = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13))
    return printable * 10 >= len(sample) * 9


def _is_page_type(content_type: bytes | None) -> bool:
    ctype = (content_type or b"").split(b";", 1)[0].strip().lower()
    return any(kind in ctype for kind in _PAGE_TYPES)


def classify(status: int, head: bytes, *, final: bool = False,
             content_type: bytes | None = None,
             leaks: Callable[[str], list[str]] | None = None) -> Verdict | None:
    """Decide from the status and the body's first bytes; None while more
    bytes are needed (never once *final*: the body ended, or
    :data:`SNIFF_BYTES` were seen).

    *content_type* is the provider's, consulted only for binary data no
    signature names; *leaks* (``Scrubber.leaks``) finds the provider's
    host or credentials in the text.
    """
    if status not in (200, 206):
        return Verdict(False, reason=f"HTTP {status}")
    head = head[:SNIFF_BYTES]
    final = final or len(head) >= SNIFF_BYTES
    if not head:
        return Verdict(False, reason="empty body") if final else None
    if leaks is not None and leaks(head.decode("latin-1")):
        return Verdict(False, reason="names the provider")
    container = container_of(head)
    if container is not None:
        return Verdict(True, container, container)
    if not final and len(head) < _DECIDE_BYTES:
        return None
    kind = page_kind(head)
    if kind is not None:
        return Verdict(False, reason=kind)
    if _is_page_type(content_type):
        return Verdict(False, reason="binary data the provider calls a page")
    return Verdict(True, None, "binary data")


class Sniffer:
    """Collects a body's first bytes until :func:`classify` decides.

    ``feed`` each chunk until it returns a :class:`Verdict`; if the body
    ends first, ``finish``.  :attr:`head` holds every byte fed so far (the
    bytes to pass on once the verdict is media).
    """

    def __init__(self, status: int, content_type: bytes | None = None,
                 leaks: Callable[[str], list[str]] | None = None) -> None:
        self.status = status
        self.content_type = content_type
        self.leaks = leaks
        self.head = b""
        self.verdict: Verdict | None = None

    def feed(self, data: bytes) -> Verdict | None:
        if self.verdict is None:
            self.head += data
            self.verdict = classify(self.status, self.head, content_type=self.content_type,
                                    leaks=self.leaks)
        return self.verdict

    def finish(self) -> Verdict:
        if self.verdict is None:
            self.verdict = classify(self.status, self.head, final=True,
                                    content_type=self.content_type, leaks=self.leaks)
            assert self.verdict is not None
        return self.verdict


def _bare(content_type: bytes | None) -> bytes:
    return (content_type or b"").split(b";", 1)[0].strip().lower()


def media_type(ext: str | None, provider_type: bytes | None,
               container: str | None = None) -> bytes:
    """The Content-Type to send for a media answer.

    The provider's when it is a ``video/`` or ``audio/`` type that fits the
    recognised container (or no container was recognised); otherwise the
    extension's when it fits the container; otherwise the container's; and
    ``application/octet-stream`` when nothing is known.
    """
    provider = _bare(provider_type)
    ext = (ext or "").lower().lstrip(".")
    if provider.startswith((b"video/", b"audio/")) and (
            container is None or provider in _CONTAINER_FITS.get(container, frozenset())):
        return provider_type.strip() if provider_type else provider
    by_ext = EXTENSION_TYPES.get(ext)
    if by_ext is not None and (container is None or container in _EXTENSION_CONTAINERS.get(ext, ())):
        return by_ext
    if container is not None and container in CONTAINER_TYPES:
        return CONTAINER_TYPES[container]
    return by_ext or b"application/octet-stream"
