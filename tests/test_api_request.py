"""Request parsing helpers (xrelay.http.request)."""

from __future__ import annotations

from twisted.web.test.requesthelper import DummyRequest

from xrelay.http.request import accepts_gzip, category_arg, ident_arg, limit_arg, request_args


def make(uri: bytes, args: dict[bytes, list[bytes]] | None = None, encoding: bytes | None = None) -> DummyRequest:
    request = DummyRequest(uri.split(b"?")[0].lstrip(b"/").split(b"/"))
    request.uri = uri
    request.args = args or {}
    if encoding is not None:
        request.requestHeaders.setRawHeaders(b"accept-encoding", [encoding])
    return request


def test_query_wins_over_the_form_body():
    # Twisted merges a form body into request.args (the body wins there)
    request = make(b"/player_api.php?username=alice&action=",
                   {b"username": [b"bob"], b"password": [b"pw"], b"action": [b"get_series"]})
    assert request_args(request) == {"username": "alice", "password": "pw", "action": ""}
    request = make(b"/get.php?username=ed%20%C3%BC&password=p%40ss", {b"username": [b"bob"]})
    assert request_args(request) == {"username": "ed \u00fc", "password": "p@ss"}


def test_odd_parameters():
    assert request_args(make(b"/x?username=%ff%fe&a=1&a=2")) == {"username": "\ufffd\ufffd", "a": "1"}
    too_many = b"/x?" + b"&".join(b"k%d=1" % i for i in range(500))
    assert request_args(make(too_many)) == {}  # refused as a whole, not a 500


def test_numbers():
    assert [ident_arg(v) for v in ("12", " 7 ", "0", "-1", "1e3", "²", "١", "9" * 12, None, "")] == \
           [12, 7, 0, None, None, None, None, None, None, None]
    assert [category_arg(v) for v in ("0", "", "abc", "5")] == [None, None, None, 5]
    assert [limit_arg(v) for v in ("0", "3", "-3")] == [None, 3, None]


def test_accepts_gzip():
    cases = {None: False, b"gzip": True, b"deflate, gzip;q=1.0, br": True, b"gzip;q=0": False,
             b"gzip; q=0.000": False, b"gzip;q=0.5": True, b"x-gzip": True, b"identity": False, b"GZIP": True}
    for header, expected in cases.items():
        assert accepts_gzip(make(b"/x", encoding=header)) is expected, header
