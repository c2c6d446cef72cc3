"""Range parsing of the demo provider's files."""

from __future__ import annotations

import pytest

from xrelay.demo.vod import ByteRange, Unsatisfiable, content_type, if_range_matches, parse_range


@pytest.mark.parametrize("header, expected", [
    (None, None),
    (b"bytes=0-0", ByteRange(0, 0)),
    (b"bytes=10-19", ByteRange(10, 19)),
    (b"bytes=990-", ByteRange(990, 999)),
    (b"bytes=-10", ByteRange(990, 999)),
    (b"bytes=-5000", ByteRange(0, 999)),
    (b"bytes=900-5000", ByteRange(900, 999)),
    (b"bytes=0-1,5-6", None),  # multi-range: the whole file
    (b"items=0-1", None),
    (b"bytes=abc", None),
    (b"bytes=5-2", None),
])
def test_parse_range(header: bytes | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", [b"bytes=1000-", b"bytes=5000-6000", b"bytes=-0"])
def test_unsatisfiable(header: bytes) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


def test_headers_and_types() -> None:
    assert ByteRange(10, 19).header(1000) == b"bytes 10-19/1000"
    assert ByteRange(10, 19).length == 10
    assert content_type("MKV") == b"video/x-matroska"
    assert content_type("weird") == b"application/octet-stream"
    lm, etag = b"Tue, 14 Nov 2023 22:13:20 GMT", b'"x"'
    assert if_range_matches(None, lm, etag) and if_range_matches(lm, lm, etag)
    assert if_range_matches(etag, lm, etag) and not if_range_matches(b'"y"', lm, etag)
