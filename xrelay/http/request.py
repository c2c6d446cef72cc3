"""Reading Xtream API requests: parameters, ids, action aliases, gzip.

Clients send parameters in the query string, in a form body (IPTV
Smarters POSTs), or both; the query string wins.  Ids and numbers are read
the way panels read them (PHP ``intval``): anything that is not a plain
number is "none".
"""

from __future__ import annotations

import re
from typing import cast
from urllib.parse import parse_qs

from twisted.web.iweb import IRequest
from twisted.web.server import Request

__all__ = ["AUTH_FAILED", "ACTION_ALIASES", "request_args", "ident_arg", "category_arg",
           "limit_arg", "accepts_gzip", "client_address", "public_base", "valid_host",
           "web_request"]

#: The body of every refused login (with HTTP 401).
AUTH_FAILED = b'{"user_info":{"auth":0}}'
#: Numeric action aliases of XC 2.x and XUI panels.
ACTION_ALIASES = {
    "200": "get_vod_categories", "201": "get_live_categories", "202": "get_live_streams",
    "203": "get_vod_streams", "204": "get_series_info", "205": "get_short_epg",
    "206": "get_series_categories", "207": "get_simple_data_table", "208": "get_series",
    "209": "get_vod_info",
}
_MAX_FIELDS = 200


#: Set on a request by a path alias (``/player_api/U/P/ACTION``...): these
#: parameters come from the path and win over the query and the body.
PATH_ARGS = "xrelay_path_args"


#: Where :func:`request_args` keeps what it parsed, for the request's next call.
_PARSED_ARGS = "xrelay_parsed_args"


def request_args(request: IRequest) -> dict[str, str]:
    """Parameters from the query string and a form body; the query wins
    (and a path alias's parameters win over both).  Parsed once per request."""
    parsed: dict[str, str] | None = getattr(request, _PARSED_ARGS, None)
    if parsed is None:
        parsed = _parse_args(request)
        setattr(request, _PARSED_ARGS, parsed)
    path_args = getattr(request, PATH_ARGS, None)
    return {**parsed, **path_args} if path_args else dict(parsed)


def _parse_args(request: IRequest) -> dict[str, str]:
    args: dict[str, str] = {}
    for key, values in (getattr(request, "args", None) or {}).items():
        if values:
            args[_text(key)] = _text(values[0])
    uri = request.uri or b""
    if b"?" in uri:
        try:
            # str in, str out: parse_qs on bytes re-encodes the values as ASCII
            query = parse_qs(uri.split(b"?", 1)[1].decode("latin-1"), keep_blank_values=True,
                             max_num_fields=_MAX_FIELDS, encoding="utf-8", errors="replace")
        except ValueError:
            query = {}
        for key, values in query.items():
            args[_text(key)] = _text(values[0])
    return args


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def ident_arg(value: str | None) -> int | None:
    """A numeric id (ASCII digits), or None for anything else."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None


def category_arg(value: str | None) -> int | None:
    """``category_id`` as panels read it: intval(), and 0 means all."""
    return ident_arg(value) or None


def limit_arg(value: str | None) -> int | None:
    """A positive ``limit``, or None."""
    return ident_arg(value) or None


def accepts_gzip(request: IRequest) -> bool:
    """Whether the client's Accept-Encoding allows gzip."""
    header = request.getHeader(b"accept-encoding") or b""
    for part in header.lower().split(b","):
        name, _, params = part.strip().partition(b";")
        if name.strip() in (b"gzip", b"x-gzip"):
            q = params.strip()
            return not (q.startswith(b"q=0") and q.strip(b"q=0.") == b"")
    return False


def client_address(request: IRequest) -> str:
    """The client's IP address (empty for a non-IP transport)."""
    return getattr(request.getClientAddress(), "host", "") or ""


def public_base(request: IRequest, public_url: str | None) -> str:
    """xrelay's base URL as the client should use it: ``scheme://host:port``.

    From ``[server] public_url`` when set, otherwise from the request's Host
    header (the port is always explicit, as panels do).  A Host header
    without a port means the client used its scheme's default port (a port
    forward or a reverse proxy in front of xrelay), and a reverse proxy's
    ``X-Forwarded-Proto`` gives the scheme the client used.
    """
    if public_url:
        return public_url
    scheme = "https" if request.isSecure() else "http"
    forwarded = (request.getHeader(b"x-forwarded-proto") or b"").split(b",")[0].strip().lower()
    if forwarded in (b"http", b"https"):
        scheme = forwarded.decode()
    host = request.getHeader(b"host")
    if host:
        text = host.decode("latin-1").strip()
        if _HOST_RE.fullmatch(text):
            if not _PORT_RE.search(text):
                text = f"{text}:{443 if scheme == 'https' else 80}"
            return f"{scheme}://{text}"
    addr = request.getHost()
    hostname = getattr(addr, "host", "localhost")
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{getattr(addr, 'port', 80)}"


def web_request(request: IRequest) -> Request:
    """*request* as what Klein and twisted.web hand every route, a
    :class:`twisted.web.server.Request`: ``IRequest`` does not declare the
    parts that streaming answers use (``registerProducer``,
    ``notifyFinish``, ``transport``)."""
    return cast(Request, request)


def valid_host(value: bytes) -> bool:
    """A Host header xrelay can build URLs from: a name or an IP literal, and a port."""
    return len(value) <= 255 and _HOST_RE.fullmatch(value.decode("latin-1")) is not None


_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", re.ASCII)
_PORT_RE = re.compile(r":\d{1,5}$", re.ASCII)
