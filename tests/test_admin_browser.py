"""/admin in a real headless Chromium at phone width (chromedriver).

Logs in with the admin's Basic credentials, sees a running demo channel and
its viewer appear by itself, presses "Ingest now" and sees the admin
ingest's outcome, disconnects the viewer, and saves a screenshot
(``$XRELAY_SCREENSHOTS/admin-phone.png`` when that variable is set).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted

from harness import ADMIN, start_relay
from streamclient import open_stream
from webdriver import Browser, browser_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not browser_available(), reason="chromium and chromedriver are not installed"),
]


@pytest_twisted.ensureDeferred
async def test_admin_page_in_chromium(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    browser = Browser()
    reader = None
    try:
        await browser.start(width=390, height=844)
        origin = relay.url.split("://", 1)[1]
        await browser.get(f"http://{ADMIN.username}:{ADMIN.password}@{origin}/admin")
        assert await browser.script("return document.title") == "xrelay admin"
        assert await browser.wait_for(
            "return document.querySelector('#channels .empty') !== null")

        # a viewer starts watching: the page shows it without a reload
        row = relay.bundle["live_streams"][0]
        _, reader = await open_stream(f"{relay.url}/live/alice/alicepw/{row['stream_id']}.ts")
        await reader.wait_bytes(188 * 50)
        await browser.wait_for(
            "var r = document.querySelector('#channels tr.viewer');"
            "return r && r.innerText.indexOf('alice') >= 0 && r.innerText.indexOf('127.0.0.1') >= 0;")
        heading = await browser.script("return document.querySelector('#channels h3').innerText")
        assert row["name"] in heading

        # "Ingest now": the new ingest appears with its trigger and outcome
        await browser.click("#ingest-now")
        outcome = await browser.wait_for(
            "var rows = document.querySelectorAll('#ingests tr.ingest');"
            "for (var i = 0; i < rows.length; i++) {"
            "  var t = rows[i].querySelector('[data-label=Trigger]');"
            "  if (t && t.innerText === 'admin') return rows[i].querySelector('.outcome').innerText; }"
            "return null;")
        assert outcome == "ok"
        assert relay.xr.ingester.last.trigger == "admin"
        notice = await browser.wait_for("return document.getElementById('notice').innerText")
        assert notice in ("ingest started", "ingest ok")
        assert await browser.wait_for(
            "return document.getElementById('notice').innerText === 'ingest ok'")

        # tidy at phone width: nothing wider than the screen
        overflow = await browser.script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        png = await browser.screenshot()
        assert png.startswith(b"\x89PNG")
        (tmp_path / "admin-phone.png").write_bytes(png)
        if os.environ.get("XRELAY_SCREENSHOTS"):
            out = Path(os.environ["XRELAY_SCREENSHOTS"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "admin-phone.png").write_bytes(png)

        # "Disconnect" ends that viewer's stream
        await browser.click("#channels button[data-action=disconnect]")
        await reader.ended
        await browser.wait_for("return document.querySelector('#channels tr.viewer') === null")
    finally:
        if reader is not None:
            reader.close()
        await browser.close()
        await relay.stop()
