"""Log output: plain text (twistd's default) or one JSON object per line.

``[log] format = "json"`` makes ``twistd -n xrelay --config FILE`` write
every event as one JSON object on one line (for journald and log
shippers)::

    {"time": "2026-11-25T09:30:00.123Z", "level": "info", "system": "xrelay.ingest.ingester",
     "message": "ingest succeeded in 1.2 s: ...", "duration": 1.2, "outcome": "ok", ...}

The event's structured fields (``log.info("... {channel}", channel=...)``)
are kept as keys, so a shipper can filter on ``channel`` or ``outcome``.

twistd starts logging *after* ``makeService`` returns, so the observer is
handed to twistd the way it asks for it: as the application's
``ILogObserver`` component, set by :class:`LoggingRoot` when twistd puts the
service tree into its application.  ``twistd --logger
xrelay.ops.logs.json_observer_factory`` does the same from the command line.

Every line also passes through the :class:`~xrelay.core.scrub.Scrubber` when one
is given (defence in depth: the provider's secrets are never logged
anyway).
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Callable

from twisted.application.service import MultiService
from twisted.logger import formatEventAsClassicLogText, FileLogObserver, ILogObserver, LogLevel, formatEvent
from twisted.python.failure import Failure

__all__ = ["LoggingRoot", "text_observer", "event_as_json_line", "json_observer", "json_observer_factory", "observer_for"]

#: Event keys that are Twisted's bookkeeping, not the event's own fields.
_INTERNAL = {"log_logger", "log_source", "log_format", "log_level", "log_namespace", "log_time",
             "log_failure", "log_system", "log_io", "log_trace", "log_text", "log_flattened",
             "log_legacy", "message", "format", "isError", "failure", "why", "system", "time",
             "printed", "log_observer"}
_SCALARS = (str, int, float, bool, type(None))


def event_as_json_line(event: dict[str, Any], scrub: Callable[[str], str] | None = None) -> str:
    """One event as one line of JSON (with its newline)."""
    stamp = event.get("log_time") or time.time()
    level = event.get("log_level")
    if event.get("isError") and level is None:
        level = LogLevel.error
    out: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z",
        "level": getattr(level, "name", None) or "info",
        "system": event.get("log_namespace") or event.get("log_system") or "-",
    }
    try:
        message = formatEvent(event)
    except Exception:
        message = "(unformattable event)"
    if not message and event.get("message"):
        message = " ".join(str(m) for m in event["message"])
    out["message"] = message
    for key, value in event.items():
        if key in _INTERNAL or key.startswith("_") or key in out:
            continue
        if isinstance(value, _SCALARS):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
            out[key] = list(value)
        else:
            out[key] = str(value)
    failure = event.get("log_failure") or event.get("failure")
    if isinstance(failure, Failure):
        out["traceback"] = failure.getTraceback()
    line = json.dumps(out, ensure_ascii=False, default=str)
    if scrub is not None:
        line = scrub(line)
    return line + "\n"


def json_observer(out: IO[str] | None = None, scrub: Callable[[str], str] | None = None) -> FileLogObserver:
    """A log observer writing one JSON object per line to *out* (stdout)."""
    stream = out if out is not None else sys.stdout
    return FileLogObserver(stream, lambda event: event_as_json_line(event, scrub))


def json_observer_factory() -> FileLogObserver:
    """For ``twistd --logger xrelay.ops.logs.json_observer_factory``."""
    return json_observer()


def observer_for(log_format: str, out: IO[str] | None = None,
                 scrub: Callable[[str], str] | None = None) -> ILogObserver | None:
    """The observer for ``[log] format``: JSON lines, or twistd's classic
    text lines; both on stdout (the journal under systemd), both scrubbed
    of the provider's secrets as a last line of defence (a traceback that
    quotes a URL, say)."""
    if log_format == "json":
        return json_observer(out, scrub)
    return text_observer(out, scrub)


def text_observer(out: IO[str] | None = None, scrub: Callable[[str], str] | None = None) -> FileLogObserver:
    """twistd's classic one-line-per-event text, scrubbed, on *out* (stdout)."""
    stream = out if out is not None else sys.stdout

    def line(event: dict[str, Any]) -> str | None:
        text = formatEventAsClassicLogText(event)
        return scrub(text) if (scrub is not None and text) else text

    return FileLogObserver(stream, line)


class LoggingRoot(MultiService):
    """The top of the tree ``makeService`` gives twistd: it sets the log
    observer on twistd's application before twistd starts logging."""

    def __init__(self, observer: ILogObserver | None) -> None:
        super().__init__()
        self.observer = observer

    def setServiceParent(self, parent: Any) -> None:
        if self.observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)
