"""HTTP errors: raised by any part, answered in one place.

A route or a component that cannot serve a request raises :class:`HTTPError`
(or one of its kinds); the web front (:mod:`xrelay.web.routes`) turns it into
the answer with :func:`render_error`.  Every error answer is short, says what
went wrong in words a user can act on, and is never cached.  Error texts are
built from what failed, never from a provider URL, so they cannot leak the
provider's address or credentials.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

__all__ = ["HTTPError", "NotFound", "Unavailable", "BadGateway", "Unauthorized",
           "render_error", "text_error"]


class HTTPError(Exception):
    """An answer other than success: a status code and a short reason.

    *body* replaces the plain-text reason when an API must answer in its own
    format (the Xtream API's ``{"user_info":{"auth":0}}``); *headers* are
    added to the answer (``Retry-After``, ``WWW-Authenticate``...).
    """

    def __init__(self, code: int, message: str, *, headers: dict[bytes, bytes] | None = None,
                 body: bytes | None = None, content_type: bytes = b"application/json") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.body = body
        self.content_type = content_type


class NotFound(HTTPError):
    def __init__(self, message: str = "not found") -> None:
        super().__init__(404, message)


class Unavailable(HTTPError):
    """503: try again later; *retry_after* seconds when known."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        headers = {b"retry-after": str(retry_after).encode()} if retry_after else None
        super().__init__(503, message, headers=headers)


class BadGateway(HTTPError):
    """502: the provider failed us."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message)


class Unauthorized(HTTPError):
    def __init__(self, message: str = "wrong username or password", *, body: bytes | None = None,
                 headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__(401, message, body=body, headers=headers)


def text_error(request: IRequest, code: int, message: str) -> bytes:
    """A short plain-text error answer (status and headers set on *request*)."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return (message.rstrip("\n") + "\n").encode()


def render_error(request: IRequest, error: HTTPError) -> bytes:
    """The one place an :class:`HTTPError` becomes an answer."""
    for name, value in error.headers.items():
        request.setHeader(name, value)
    if error.body is None:
        return text_error(request, error.code, error.message)
    request.setResponseCode(error.code)
    request.setHeader(b"content-type", error.content_type)
    request.setHeader(b"cache-control", b"no-store")
    return error.body
