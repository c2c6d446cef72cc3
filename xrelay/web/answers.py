"""The one place an error becomes an answer, for every Klein app of the web front."""

from __future__ import annotations

from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from xrelay.http.errors import HTTPError, render_error, text_error

__all__ = ["ANSWERED_ERRORS", "error_answer"]

#: What :func:`error_answer` answers: raised by a part, or by the router.
ANSWERED_ERRORS = (HTTPError, NotFound, MethodNotAllowed)


def error_answer(request: IRequest, failure: Failure) -> bytes:
    error = failure.value
    if isinstance(error, HTTPError):
        return render_error(request, error)
    if isinstance(error, MethodNotAllowed):
        return text_error(request, 405, "method not allowed")
    return text_error(request, 404, "not found")
