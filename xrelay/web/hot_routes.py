"""The live stream and HLS URLs, dispatched without the router.

An HLS player asks for its playlist and for a segment every few seconds; a
thousand players make hundreds of such requests a second.  Routed by Klein,
every request left a reference cycle behind (Klein's and werkzeug's
recursive closures hold the request), so each one, with its headers,
addresses and closures, became work for the cyclic garbage collector, whose
pauses stop the reactor; and routing was a good part of a request's cost.

:class:`HotRoutes` sits in front of the router.  A ``GET`` or ``HEAD`` of
``/live/USER/PASS/ID.EXT`` or ``/hls/USER/TOKEN/NAME`` whose path is plain
(ASCII, no percent-escape, no empty segment), and a ``GET`` or ``HEAD`` of
``/player_api.php`` (the players' list and guide requests, hundreds a second
from a household's apps at start-up), is handed straight to the
:class:`~xrelay.web.routes.WebApp` method the router would have called
(:meth:`~xrelay.web.routes.WebApp.live`, :meth:`~xrelay.web.routes.WebApp.hls`,
:meth:`~xrelay.web.routes.WebApp.player_api`: the same login, lineup check
and parts), and what it returns (bytes, a
resource, a Deferred) or raises is answered as the router answers it
(:func:`~xrelay.web.answers.error_answer` for the errors it knows, Twisted's
500 for the others).  Every other request goes to the router unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from xrelay.web.answers import ANSWERED_ERRORS, error_answer
from xrelay.web.routes import WebApp, stream_ref

__all__ = ["HotRoutes"]

log = Logger()

_READ = (b"GET", b"HEAD")


class HotRoutes(Resource):
    """Answers the API, live and HLS URLs itself; hands everything else to *router*."""

    isLeaf = True

    def __init__(self, web: WebApp, router: IResource) -> None:
        super().__init__()
        self.web = web
        self.router = router

    def render(self, request: Request) -> Any:
        route = self._match(request)
        if route is None:
            return self.router.render(request)
        # What the router does for a full match: the whole path is consumed.
        request.prepath = (request.prepath or []) + (request.postpath or [])
        request.postpath = []
        try:
            result = route(request)
        except Exception:
            _failed(Failure(), request)
            return NOT_DONE_YET
        if isinstance(result, Deferred):
            result.addCallbacks(_answer, _failed, callbackArgs=(request,), errbackArgs=(request,))
            request.notifyFinish().addErrback(_cancel, result)  # the client left
        else:
            _answer(result, request)
        return NOT_DONE_YET

    def _match(self, request: Request) -> Callable[[Request], Any] | None:
        """The route of the API or of a plain live or HLS path, else None
        (the router's)."""
        if request.method not in _READ:
            return None
        path = request.path
        if path == b"/player_api.php":
            return self.web.player_api
        if not path.startswith((b"/live/", b"/hls/")) or b"%" in path or not path.isascii():
            return None
        parts = path.decode("ascii").split("/")
        if len(parts) != 5 or not all(parts[2:]):
            return None
        _, kind, user, secret, name = parts
        web = self.web
        if kind == "hls":
            return lambda request: web.hls(request, user, secret, name)
        stream = stream_ref(name)
        if stream is None:
            return None
        return lambda request: web.live(request, user, secret, stream)


def _cancel(reason: Failure, result: Deferred[Any]) -> None:
    result.cancel()


def _gone(request: Request) -> bool:
    return bool(request.finished or getattr(request, "_disconnected", False))


def _answer(result: Any, request: Request) -> None:
    """Write a route's result as the router does: a resource renders, bytes
    (or text) are the body; the request is finished."""
    if IResource.providedBy(result):
        request.render(getChildForRequest(result, request))
        return
    if _gone(request):
        return
    if isinstance(result, str):
        result = result.encode("utf-8")
    if isinstance(result, bytes):
        request.write(result)
    request.finish()


def _failed(failure: Failure, request: Request) -> None:
    """Answer a route's error as the router does."""
    if _gone(request):
        if not failure.check(CancelledError):
            log.failure("answering {path} after the client left", failure,
                        path=request.path.split(b"/", 2)[1].decode("ascii", "replace"))
        return
    if failure.check(*ANSWERED_ERRORS):
        _answer(error_answer(request, failure), request)
    else:
        request.processingFailed(failure)
