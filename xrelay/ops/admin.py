"""``/admin``: the admin's live page (HTTP Basic, ``[admin]`` credentials).

Everything is rendered here, on the server: the page embeds the current
state, and a few lines of JavaScript (``static/admin.js``) fetch the
``/admin/live`` fragment every few seconds and swap it in.  Buttons post to
``/admin/ingest`` and ``/admin/disconnect``; every POST must carry the
page's ``X-XRelay-Token`` header (a browser cannot add a custom header to a
cross-site request without a CORS grant, which xrelay never gives) and, if
the browser sends one, an ``Origin`` matching the Host: no CSRF.

Routes under ``/admin`` (all admin-only):

``GET /admin``             the page
``GET /admin/live``        the live part of the page (HTML fragment)
``GET /admin/state.json``  the same facts as JSON
``GET /admin/static/F``    the page's CSS and JavaScript
``POST /admin/ingest``     start an ingest now
``POST /admin/disconnect`` close one viewer's stream (``id=v12``)
"""

from __future__ import annotations

import hmac
import html
import json
import secrets
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay import __version__
from xrelay.http.errors import HTTPError, NotFound
from xrelay.ops.overview import Overview

__all__ = ["AdminPage"]

log = Logger()

STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}
#: Seconds between two refreshes of the page.
REFRESH = 3
#: Viewers listed per channel (a big LAN party stays readable and cheap).
MAX_ROWS = 100


class AdminPage:
    """The admin page's answers; the routes (:mod:`xrelay.web.routes`) check the admin login."""

    def __init__(self, overview: Overview, trigger_ingest: Callable[[str], Any]) -> None:
        self.overview = overview
        self.trigger_ingest = trigger_ingest
        self.token = secrets.token_urlsafe(24)
        self.static = {p.name: p.read_bytes() for p in STATIC_DIR.iterdir()
                       if p.suffix in STATIC_TYPES} if STATIC_DIR.is_dir() else {}

    # -- GET ----------------------------------------------------------------------

    def page_html(self, request: IRequest) -> bytes:
        return self._html(request, self.page())

    def live_html(self, request: IRequest) -> bytes:
        return self._html(request, self.live())

    def state_json(self, request: IRequest) -> bytes:
        _protect(request)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.overview.state(), default=str).encode()

    def static_file(self, request: IRequest, name: str) -> bytes:
        if name not in self.static:
            raise NotFound()
        _protect(request)
        request.setHeader(b"content-type", STATIC_TYPES[Path(name).suffix])
        return self.static[name]

    def _html(self, request: IRequest, body: str) -> bytes:
        _protect(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy",
                          b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        return body.encode()

    # -- POST (the page's buttons) -----------------------------------------------------

    def check_page_token(self, request: IRequest) -> None:
        """A POST must come from the page: its token header, and a same-origin ``Origin``."""
        _protect(request)
        token = (request.getHeader(b"x-xrelay-token") or b"")
        if not hmac.compare_digest(token, self.token.encode()) or not _same_origin(request):
            raise HTTPError(403, "missing or wrong page token: reload the admin page")

    def disconnect(self, request: IRequest) -> bytes:
        self.check_page_token(request)
        ident = (request.args.get(b"id") or [b""])[0].decode("latin-1")
        if not self.overview.disconnect(ident):
            return self._json(request, {"ok": False, "message": "that viewer is gone"}, 404)
        return self._json(request, {"ok": True, "message": "viewer disconnected"})

    def ingest(self, request: IRequest) -> bytes:
        self.check_page_token(request)
        already = self.overview.ingest_running
        log.info("admin requested an ingest", event="admin_ingest")
        d = self.trigger_ingest("admin")
        d.addErrback(lambda f: log.failure("admin ingest", f))
        return self._json(request, {"ok": True, "message": "an ingest is already running" if already
                                    else "ingest started"}, 202)

    def _json(self, request: IRequest, data: dict[str, Any], code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(data).encode()

    # -- rendering ------------------------------------------------------------------

    def page(self) -> str:
        return PAGE.format(version=_e(__version__), token=_e(self.token), refresh=REFRESH * 1000,
                           live=self.live())

    def live(self) -> str:
        state = self.overview.state()
        relay, ingest = state["relay"], state["ingest"]
        slots = relay.get("slots", {})
        parts = [
            '<section class="cards">',
            _card("Viewers", str(relay.get("viewers", 0))),
            _card("Channels", str(len(relay.get("channels", [])))),
            _card("Upstream slots", f'{slots.get("used", 0)} / {slots.get("allowed", 0)}',
                  "slots-full" if slots.get("allowed") and slots.get("used", 0) >= slots["allowed"] else ""),
            _card("Evictions", str(relay.get("evictions", 0))),
            _card("Reconnects", str(relay.get("reconnects", 0))),
            _card("Refused (no slot)", str(slots.get("refused", 0))),
            _card("Catalog age", _duration(ingest["cache_age"]) if ingest["cache_age"] is not None else "none"),
            _card("Up for", _duration(state["uptime"])),
            "</section>",
            self._channels(relay.get("channels", [])),
            self._media(state.get("media") or {}),
            self._lineups(state.get("lineups") or {}),
            self._ingests(ingest),
        ]
        return "\n".join(parts)

    def _channels(self, channels: list[dict[str, Any]]) -> str:
        out = ['<section id="channels"><h2>Live channels</h2>']
        if not channels:
            out.append('<p class="empty">Nobody is watching a live channel.</p>')
        for c in channels:
            up = c.get("upstream", {})
            rate = up.get("bitrate_bps")
            out.append(
                f'<article class="channel" data-stream="{_e(c.get("stream_id"))}">'
                f'<h3>{_e(c.get("name") or "channel")} <small>#{_e(c.get("stream_id"))}</small></h3>'
                f'<p class="meta"><span class="state state-{_e(str(c.get("state", "")).replace(" ", "-"))}">'
                f'{_e(c.get("state", ""))}</span>'
                f' · {_rate(rate)} · in {_bytes(up.get("bytes", 0))}'
                f' · reconnects {_e(up.get("reconnects", 0))} · evictions {_e(c.get("evictions", 0))}</p>')
            viewers = c.get("viewers", [])
            if not viewers:
                out.append('<p class="empty">No viewers (lingering).</p>')
            else:
                out.append('<table class="viewers"><thead><tr><th>User</th><th>Address</th>'
                           '<th>Watching</th><th>Rate</th><th>Sent</th><th></th></tr></thead><tbody>')
                for v in viewers[:MAX_ROWS]:
                    button = (f'<button type="button" class="danger" data-action="disconnect" '
                              f'data-id="{_e(v["id"])}">Disconnect</button>') if v.get("id") else ""
                    behind = v.get("behind_seconds")
                    out.append(
                        f'<tr class="viewer"><td data-label="User">{_e(v.get("user"))}'
                        f'{" <small>HLS</small>" if v.get("format") == "hls" else ""}</td>'
                        f'<td data-label="Address">{_e(v.get("address"))}</td>'
                        f'<td data-label="Watching">{_duration(v.get("seconds") or 0)}</td>'
                        f'<td data-label="Rate">{_rate(v.get("rate_bps"))}'
                        f'{f" <small>({behind:g} s behind)</small>" if behind else ""}</td>'
                        f'<td data-label="Sent">{_bytes(v.get("bytes", 0))}</td>'
                        f'<td class="actions">{button}</td></tr>')
                out.append("</tbody></table>")
                if len(viewers) > MAX_ROWS:
                    out.append(f'<p class="meta">… and {len(viewers) - MAX_ROWS} more viewers '
                               f'(all of them in <a href="/admin/state.json">state.json</a>)</p>')
            out.append("</article>")
        out.append("</section>")
        return "".join(out)

    def _media(self, media: dict[str, Any]) -> str:
        files = media.get("files") or []
        hls = (media.get("hls") or {}).get("channels") or []
        if not files and not hls:
            return ""
        out = ['<section id="media"><h2>Movies, episodes, catch-up and HLS</h2>']
        if files:
            out.append('<table class="files"><thead><tr><th>What</th><th>User</th><th>Address</th>'
                       '<th>Watching</th><th>Rate</th><th>Sent</th><th></th></tr></thead><tbody>')
            for f in files:
                button = (f'<button type="button" class="danger" data-action="disconnect" '
                          f'data-id="{_e(f["id"])}">Disconnect</button>') if f.get("id") else ""
                out.append(
                    f'<tr class="file"><td data-label="What">{_e(f.get("what", ""))}</td>'
                    f'<td data-label="User">{_e(f.get("user", ""))}</td>'
                    f'<td data-label="Address">{_e(f.get("address", ""))}</td>'
                    f'<td data-label="Watching">{_duration(f.get("seconds") or 0)}</td>'
                    f'<td data-label="Rate">{_rate(f.get("rate_bps"))}</td>'
                    f'<td data-label="Sent">{_bytes(f.get("bytes", 0))}</td>'
                    f'<td class="actions">{button}</td></tr>')
            out.append("</tbody></table>")
        for c in hls:
            clients = ", ".join(f'{_e(x.get("user", ""))}@{_e(x.get("address", ""))}'
                                for x in c.get("clients") or [])
            out.append(f'<p class="meta">HLS {_e(c.get("what", ""))}: {clients or "no client"}</p>')
        out.append("</section>")
        return "".join(out)

    def _lineups(self, lineups: dict[str, Any]) -> str:
        """Each user's lineup and what it holds."""
        users = lineups.get("users") or []
        if not users:
            return ""
        out = ['<section id="lineups"><h2>Users and lineups</h2>',
               '<table class="lineups"><thead><tr><th>User</th><th>Lineup</th><th>Live</th>'
               '<th>Movies</th><th>Series</th></tr></thead><tbody>']
        for u in users:
            counts = u.get("counts")
            cells = ([_e(counts.get(k, 0)) for k in ("live", "vod", "series")] if counts
                     else ['being built', "", ""])
            out.append(f'<tr class="lineup"><td data-label="User">{_e(u.get("user", ""))}</td>'
                       f'<td data-label="Lineup">{_e(u.get("lineup") or "whole catalog")}</td>'
                       f'<td data-label="Live">{cells[0]}</td><td data-label="Movies">{cells[1]}</td>'
                       f'<td data-label="Series">{cells[2]}</td></tr>')
        out.append("</tbody></table></section>")
        return "".join(out)

    def _ingests(self, ingest: dict[str, Any]) -> str:
        counts = ingest.get("catalog") or {}
        summary = ", ".join(f"{_e(counts[k])} {label}" for k, label in (
            ("live_streams", "live"), ("vod_streams", "movies"), ("series", "series"),
            ("episodes", "episodes"), ("programmes", "programmes")) if k in counts)
        running = ('<p class="running" id="ingest-running">Ingest running…</p>'
                   if ingest.get("running") else "")
        out = ['<section id="ingests"><h2>Ingests</h2>',
               f'<p class="meta">Catalog: {summary or "none yet"}</p>', running]
        history = ingest.get("history") or []
        if not history:
            out.append('<p class="empty">No ingest yet.</p>')
        else:
            out.append('<table class="ingests"><thead><tr><th>Started</th><th>Trigger</th>'
                       '<th>Outcome</th><th>Duration</th><th>Details</th></tr></thead><tbody>')
            for entry in history:
                ok = bool(entry.get("ok"))
                c = entry.get("counts") or {}
                detail = (f'{_e(c.get("live_streams", 0))} live, {_e(c.get("vod_streams", 0))} movies, '
                          f'{_e(c.get("series", 0))} series') if ok else _e(entry.get("reason") or "")
                out.append(
                    f'<tr class="ingest {"ok" if ok else "failed"}">'
                    f'<td data-label="Started">{_ago(entry.get("started"))}</td>'
                    f'<td data-label="Trigger">{_e(entry.get("trigger", ""))}</td>'
                    f'<td data-label="Outcome" class="outcome">{"ok" if ok else "failed"}</td>'
                    f'<td data-label="Duration">{_e(round(float(entry.get("duration") or 0), 1))} s</td>'
                    f'<td data-label="Details">{detail}</td></tr>')
            out.append("</tbody></table>")
        out.append("</section>")
        return "".join(out)


def _protect(request: IRequest) -> None:
    """Headers of every admin answer: never cached, never framed, never sniffed."""
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"x-content-type-options", b"nosniff")


def _same_origin(request: IRequest) -> bool:
    origin = request.getHeader(b"origin")
    if not origin:
        return True
    host = request.getHeader(b"host") or b""
    return urlsplit(origin.decode("latin-1")).netloc.lower() == host.decode("latin-1").lower()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _card(label: str, value: str, extra: str = "") -> str:
    return f'<div class="card {extra}"><span class="label">{_e(label)}</span><span class="value">{_e(value)}</span></div>'


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {m:02d} min"
    return f"{hours // 24} days"


def _ago(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "?"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    return f'<time datetime="{_e(stamp)}" title="{_e(when)}">{_e(_duration(max(0, time.time() - stamp)))} ago</time>'


def _bytes(count: Any) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _rate(bps: Any) -> str:
    if not isinstance(bps, (int, float)):
        return "–"
    return f"{bps / 1e6:.1f} Mbit/s" if bps >= 1e5 else f"{bps / 1e3:.0f} kbit/s"


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="xrelay-token" content="{token}">
<meta name="xrelay-refresh" content="{refresh}">
<title>xrelay admin</title>
<link rel="stylesheet" href="/admin/static/admin.css">
<script src="/admin/static/admin.js" defer></script>
</head>
<body>
<header>
<h1>xrelay <small>{version}</small></h1>
<div class="toolbar">
<button type="button" id="ingest-now" data-action="ingest">Ingest now</button>
<span id="notice" role="status" aria-live="polite"></span>
</div>
</header>
<main id="live">
{live}
</main>
<footer><span id="updated">updated by the server</span></footer>
</body>
</html>
"""
