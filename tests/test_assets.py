"""What /asset/ serves: the provider images a generation names
(xrelay.catalog.assets) and only image bytes (xrelay.provider.images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrelay.catalog.assets import (AssetIndex, AssetNames, asset_key, asset_keys_in_files,
                                   asset_paths_in_json)
from xrelay.catalog.rows import encode_row
from xrelay.provider.images import image_type

MARK = "@XRELAY_BASE@/asset/"


def test_paths_are_found_in_encoded_rows_and_xml(tmp_path: Path) -> None:
    names = AssetNames()
    names.add_json(encode_row({"stream_icon": MARK + "logos/a b.png",
                               "backdrop_path": [MARK + 'img?id=1&s="x"', "http://elsewhere/b.png"],
                               "name": "no image here"}))
    guide = tmp_path / "guide.xml"
    # a big guide read in chunks: the icons around a chunk's end are found too
    filler = b"<programme>" + b"x" * 5000 + b"</programme>\n"
    guide.write_bytes(b"<tv>" + filler * 300 + b'<icon src="' + MARK.encode() + b'icons/c.png?a=1&amp;b=2"/>'
                      + filler * 3 + b'<icon src="' + MARK.encode() + b'icons/d.png"/></tv>')
    names.add_xml_file(guide, chunk=4096)
    names.add_xml_file(tmp_path / "missing.xml")
    entry = names.save(tmp_path / "assets.idx")
    index = AssetIndex.load(tmp_path, entry)
    assert len(index) == 4
    for path in ("logos/a b.png", "logos/a%20b.png", 'img?id=1&s="x"', "icons/c.png?a=1&b=2", "icons/d.png"):
        assert index.names(path), path
    for path in ("logos/a.png", "b.png", "icons/c.png", "elsewhere/b.png", ""):
        assert not index.names(path), path


def test_details_files_are_scanned(tmp_path: Path) -> None:
    series = tmp_path / "details" / "series"
    series.mkdir(parents=True)
    (series / "7.json").write_bytes(encode_row({"info": {"cover": MARK + "s/7.jpg"},
                                                "episodes": {"1": [{"info": {"movie_image": MARK + "e/1.jpg"}}]}}))
    (series / "8.json").write_bytes(b"not json " + (MARK + 'x.png"').encode())
    keys = asset_keys_in_files(tmp_path / "details")
    assert keys == {asset_key("s/7.jpg"), asset_key("e/1.jpg"), asset_key("x.png")}
    assert list(asset_paths_in_json(b'{"a":"plain"}')) == []


@pytest.mark.parametrize("data, kind", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"image/png"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, b"image/jpeg"),
    (b"GIF89a" + b"\x00" * 20, b"image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20, b"image/webp"),
    (b"\x00\x00\x00\x1cftypavif" + b"\x00" * 20, b"image/avif"),
    (b"BM" + b"\x00" * 40, b"image/bmp"),
    (b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 30, b"image/x-icon"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", None),
    (b"<html><body>404</body></html>", None),
    (b'{"user_info":{"auth":0}}', None),
    (b"\x00\x00\x00\x18ftypmp42", None),
    (b"", None),
])
def test_only_image_bytes_are_images(data: bytes, kind: bytes | None) -> None:
    assert image_type(data) == kind
