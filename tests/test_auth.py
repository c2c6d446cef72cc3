"""Admin HTTP Basic authentication (xrelay.http.auth)."""

from __future__ import annotations

import base64

import pytest
from twisted.web.test.requesthelper import DummyRequest

from xrelay.http.auth import check_admin, parse_basic, require_admin
from xrelay.http.errors import HTTPError, render_error
from xrelay.core.config import AdminConfig

ADMIN = AdminConfig(username="admin", password="s3cr\u00e9t")


def request_with(header: bytes | None) -> DummyRequest:
    request = DummyRequest([b"status"])
    if header is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [header])
    return request


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_right_credentials_pass() -> None:
    request = request_with(basic("admin", "s3cr\u00e9t"))
    assert check_admin(request, ADMIN)
    require_admin(request, ADMIN)  # does not raise
    assert request.responseCode is None or request.responseCode == 200


@pytest.mark.parametrize("header", [
    None,
    basic("admin", "wrong"),
    basic("root", "s3cr\u00e9t"),
    basic("admin", ""),
    b"Basic !!!notbase64",
    b"Basic " + base64.b64encode(b"no-colon"),
    b"Bearer abc",
])
def test_anything_else_gets_401_with_challenge(header: bytes | None) -> None:
    request = request_with(header)
    with pytest.raises(HTTPError) as refused:
        require_admin(request, ADMIN)
    body = render_error(request, refused.value)
    assert b"s3cr" not in body
    assert request.responseCode == 401
    challenge = request.responseHeaders.getRawHeaders(b"www-authenticate")[0]
    assert challenge.startswith(b'Basic realm="xrelay admin"')


def test_password_containing_colon() -> None:
    admin = AdminConfig(username="a", password="x:y")
    assert parse_basic(request_with(basic("a", "x:y"))) == (b"a", b"x:y")
    assert check_admin(request_with(basic("a", "x:y")), admin)


def test_no_admin_section_is_403() -> None:
    request = request_with(basic("admin", "s3cr\u00e9t"))
    with pytest.raises(HTTPError) as refused:
        require_admin(request, None)
    render_error(request, refused.value)
    assert request.responseCode == 403
    assert not check_admin(request, None)


def test_refusal_log_has_no_credentials() -> None:
    from twisted.logger import globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with pytest.raises(HTTPError):
            require_admin(request_with(basic("guessuser", "guesspw")), ADMIN)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert events, "a refused login is logged"
    text = repr(events)
    assert "guesspw" not in text and "guessuser" not in text
