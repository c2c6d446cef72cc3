"""Logging that follows twistd: twistd's destination, xrelay's format, secrets masked.

**Where** the log goes is twistd's choice, made from its own options by its
own rules (:func:`destination`): ``--syslog`` (with ``--prefix``), else
``--logfile FILE`` (rotated at 1 MB and on SIGUSR1), else standard output
under ``-n``, else ``twistd.log`` (a daemon cannot log to standard output).

**How** each event reads is xrelay's: twistd's classic text, or with
``[log] format = "json"`` one JSON object per line (for journald and log
shippers; syslog always gets text)::

    {"time": "2026-11-25T09:30:00.123Z", "level": "info", "system": "xrelay.ingest.ingester",
     "message": "ingest succeeded in 1.2 s: ...", "duration": 1.2, "outcome": "ok", ...}

The event's structured fields (``log.info("... {channel}", channel=...)``)
are kept as keys, so a shipper can filter on ``channel`` or ``outcome``.

**Masking**: :class:`ScrubbingObserver` stands in front of the destination
and hands it a copy of every event whose message, fields and traceback have
the provider's secrets masked (:func:`masked_event`), *before* anything is
formatted or encoded; so no escaping (a ``"`` or ``\\`` in a password
written into JSON) can hide a secret from the scrubber.  Defence in depth:
the provider's secrets are not logged in the first place.

**How twistd gets it**: twistd starts logging after ``makeService``
returns, with the application's ``ILogObserver`` component when there is
one (its documented hook) and otherwise with an observer of its own that
nothing could wrap.  :class:`LoggingRoot` sets that component when twistd
puts the service tree into its application; :func:`twistd_observer` builds
it.  ``twistd --logger`` makes twistd ignore the component, so then neither
the format nor the masking apply (xrelay logs a warning saying so).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Literal, Mapping, cast

from twisted.application.service import IServiceCollection, MultiService
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import (FileLogObserver, ILogObserver, LegacyLogObserverWrapper, LogEvent, Logger, LogLevel,
                            formatEvent, formatEventAsClassicLogText, formatTime)
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.python.log import ILogObserver as ILegacyLogObserver
from twisted.python.reflect import safe_str
from zope.interface import implementer

__all__ = ["Destination", "LoggingRoot", "MaskedFailure", "ScrubbingObserver", "destination", "event_as_json_line",
           "json_observer", "masked_event", "open_destination", "premasked", "text_observer", "twistd_observer"]

#: Masks the provider's secrets in a text (:meth:`xrelay.core.scrub.Scrubber.text`).
Scrub = Callable[[str], str]
#: A ``twisted.logger`` observer (one that provides ``ILogObserver``).
Observer = Callable[[LogEvent], None]
#: A ``twisted.python.log`` observer (what syslog's is).
LegacyObserver = Callable[[dict[str, Any]], None]

log = Logger()

# -- masking ------------------------------------------------------------------

#: Twisted's bookkeeping: passed on as it is (no secret, and not text).
_BOOKKEEPING = frozenset({"log_time", "log_level", "log_namespace", "log_system", "system", "time", "isError",
                          "log_logger", "log_source", "log_trace"})
#: What would let a formatter render the original event: replaced by the masked text.
_RENDERINGS = frozenset({"log_format", "log_flattened", "log_legacy", "format"})


#: The key and value that mark an event as masked by its emitter (see :func:`premasked`).
_PREMASKED_KEY = "_xrelay_premasked"
_PREMASKED = object()


#: All an event marked premasked may hold (anything more is masked as usual).
_PREMASKED_KEYS = _BOOKKEEPING | {"log_format", "line", _PREMASKED_KEY}


def premasked(line: str) -> dict[str, Any]:
    """The fields of an event whose only text, *line*, is masked already
    (``log.info("{line}", **premasked(scrub(text)))``): the access log's
    lines, one per request, skip :func:`masked_event`'s copy.  The marker is
    an object of this module's, so that no event from elsewhere carries it."""
    return {"line": line, _PREMASKED_KEY: _PREMASKED}


class MaskedError(Exception):
    """Stands for the exception of a :class:`MaskedFailure`, with its message masked."""


class MaskedFailure(Failure):
    """A logged failure as observers see it: the original's traceback text
    and error message with the secrets masked (a provider URL in an
    exception's message, say)."""

    def __init__(self, failure: Failure, scrub: Scrub) -> None:
        try:
            traceback = failure.getTraceback()
        except BaseException as e:  # as Twisted's own formatter does
            traceback = f"(UNABLE TO OBTAIN TRACEBACK FROM EVENT): {e}"
        super().__init__(MaskedError(scrub(failure.getErrorMessage())))
        self.masked_traceback = scrub(traceback)

    def getTraceback(self, elideFrameworkCode: int = 0, detail: str = "default") -> str:
        return self.masked_traceback


def masked_event(event: LogEvent, scrub: Scrub) -> LogEvent:
    """A copy of *event* with the secrets masked in everything an observer renders.

    The message is formatted from the original event and masked, and becomes
    the copy's literal ``log_format``; string fields are masked, other values
    (objects, a number equal to a secret) become masked text; failures become
    :class:`MaskedFailure`.
    """
    masked: dict[str, Any] = {}
    failures: dict[int, MaskedFailure] = {}
    for key, value in event.items():
        if key in _RENDERINGS:
            continue
        masked[key] = value if key in _BOOKKEEPING else _masked(value, scrub, failures)
    if "log_format" in event or "log_flattened" in event:
        masked["log_format"] = scrub(formatEvent(event)).replace("{", "{{").replace("}", "}}")
    return masked


def _masked(value: Any, scrub: Scrub, failures: dict[int, MaskedFailure]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        text = str(value)
        masked = scrub(text)
        return value if masked == text else masked
    if isinstance(value, tuple):  # a legacy event's "message"
        return tuple(_masked(v, scrub, failures) for v in value)
    if isinstance(value, list):
        return [_masked(v, scrub, failures) for v in value]
    if isinstance(value, Failure):  # "log_failure" and a legacy "failure" are one object
        if id(value) not in failures:
            failures[id(value)] = MaskedFailure(value, scrub)
        return failures[id(value)]
    return scrub(safe_str(value))


@implementer(ILogObserver)
class ScrubbingObserver:
    """Passes every event on to *observer* masked by :func:`masked_event`."""

    def __init__(self, observer: Observer, scrub: Scrub) -> None:
        self.observer = observer
        self.scrub = scrub

    def __call__(self, event: LogEvent) -> None:
        if event.get(_PREMASKED_KEY) is _PREMASKED and event.get("log_format") == "{line}" \
                and event.keys() <= _PREMASKED_KEYS:
            self.observer(event)
        else:
            self.observer(masked_event(event, self.scrub))


# -- JSON lines ---------------------------------------------------------------

#: Event keys that are Twisted's bookkeeping, not the event's own fields.
_INTERNAL = {"log_logger", "log_source", "log_format", "log_level", "log_namespace", "log_time",
             "log_failure", "log_system", "log_io", "log_trace", "log_text", "log_flattened",
             "log_legacy", "message", "format", "isError", "failure", "why", "system", "time",
             "printed", "log_observer"}
_SCALARS = (str, int, float, bool, type(None))


def event_as_json_line(event: LogEvent) -> str:
    """One event as one line of JSON (with its newline).  It encodes what it
    is given: mask first (:class:`ScrubbingObserver`)."""
    stamp = event.get("log_time") or time.time()
    level = event.get("log_level")
    if event.get("isError") and level is None:
        level = LogLevel.error
    out: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z",
        "level": getattr(level, "name", None) or "info",
        "system": event.get("log_namespace") or event.get("log_system") or "-",
    }
    message = formatEvent(event)
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
    return json.dumps(out, ensure_ascii=False, default=str) + "\n"


class _SecondClock:
    """twistd's timestamp text, formatted once per second (an access log
    writes hundreds of lines a second)."""

    def __init__(self) -> None:
        self.second: int | None = None
        self.text = "-"

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when)
        second = int(when)
        if second != self.second:
            self.second, self.text = second, formatTime(second)
        return self.text


def text_observer(out: IO[str]) -> FileLogObserver:
    """twistd's classic text lines (``textFileLogObserver``'s), the
    timestamp formatted once per second."""
    clock = _SecondClock()
    return FileLogObserver(out, lambda event: formatEventAsClassicLogText(event, formatTime=clock))


def json_observer(out: IO[str]) -> FileLogObserver:
    """A log observer writing one JSON object per line to *out*."""
    return FileLogObserver(out, event_as_json_line)


# -- twistd's destination -----------------------------------------------------

@dataclass(frozen=True)
class Destination:
    """Where the log goes: standard output, a file (*path*) or syslog (*prefix*)."""

    kind: Literal["stdout", "file", "syslog"]
    path: str = ""
    prefix: str = ""


def destination(twistd_options: Mapping[str, Any] | None) -> Destination:
    """Where twistd would log with these options (its ``UnixAppLogger``'s rules).

    ``None`` (not run by twistd: tests, an embedding program) is standard
    output.  A non-Unix twistd has no ``nodaemon`` option and runs in the
    foreground.
    """
    if twistd_options is None:
        return Destination("stdout")
    if twistd_options.get("syslog"):
        return Destination("syslog", prefix=twistd_options.get("prefix") or "twisted")
    logfile = twistd_options.get("logfile") or ""
    foreground = bool(twistd_options.get("nodaemon", True))
    if logfile == "-":
        if not foreground:
            raise SystemExit("Daemons cannot log to stdout, exiting!")  # twistd's own words
        return Destination("stdout")
    if not logfile and foreground:
        return Destination("stdout")
    return Destination("file", path=logfile or "twistd.log")


def open_destination(where: Destination, log_format: str, reactor: IReactorFromThreads, *,
                     stdout: IO[str] | None = None,
                     syslog: Callable[[str], LegacyObserver] | None = None) -> Observer:
    """The observer writing to *where* in *log_format* (``"text"`` or
    ``"json"``; syslog gets text).  *stdout* is taken now, before twistd
    redirects ``sys.stdout`` into the log; *syslog* makes the syslog
    observer for a prefix (Twisted's ``SyslogObserver``)."""
    if where.kind == "syslog":
        legacy = (syslog or _syslog_observer)(where.prefix)
        return cast(Observer, LegacyLogObserverWrapper(cast(ILegacyLogObserver, legacy)))
    stream = _log_file(where.path, reactor) if where.kind == "file" else (stdout or sys.stdout)
    return cast(Observer, json_observer(stream) if log_format == "json" else text_observer(stream))


def _syslog_observer(prefix: str) -> LegacyObserver:
    from twisted.python.syslog import SyslogObserver

    return cast(LegacyObserver, SyslogObserver(prefix).emit)


def _log_file(path: str, reactor: IReactorFromThreads) -> IO[str]:
    """twistd's log file: rotated at 1 MB, and on SIGUSR1 unless another
    handler has that signal."""
    log_file = LogFile.fromFullPath(path)
    if not signal.getsignal(signal.SIGUSR1):
        signal.signal(signal.SIGUSR1, lambda signum, frame: reactor.callFromThread(log_file.rotate))
    return cast(IO[str], log_file)


def twistd_observer(log_format: str, scrub: Scrub, reactor: IReactorFromThreads,
                    twistd_options: Mapping[str, Any] | None) -> Observer:
    """The observer for twistd's destination (*twistd_options*: twistd's own,
    ``Options.parent`` of xrelay's), in *log_format*, behind the scrubber."""
    if twistd_options is not None and twistd_options.get("logger"):
        log.warn("twistd --logger replaces xrelay's log observer: [log] format does not apply, "
                 "and the log is not scrubbed of the provider's secrets")
    return ScrubbingObserver(open_destination(destination(twistd_options), log_format, reactor), scrub)


class LoggingRoot(MultiService):
    """The top of the tree ``makeService`` gives twistd: it sets the log
    observer on twistd's application before twistd starts logging."""

    def __init__(self, observer: Observer | None) -> None:
        super().__init__()
        self.observer = observer

    def setServiceParent(self, parent: IServiceCollection) -> None:
        if self.observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)
