"""A tiny asynchronous W3C WebDriver client (treq) for Debian's chromedriver.

Enough to drive headless Chromium in a test that runs in the same reactor
as the server it tests: open a page, find and click elements, run a script,
take a screenshot.  ``browser_available()`` tells whether chromium and
chromedriver are installed.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--disable-extensions"]


def browser_available() -> bool:
    return bool(CHROMIUM and CHROMEDRIVER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriverError(Exception):
    pass


class Browser:
    """One chromedriver process with one headless Chromium session."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.profile = tempfile.mkdtemp(prefix="xrelay-chromium-")
        self.process: subprocess.Popen[bytes] | None = None
        self.session: str | None = None

    async def start(self, width: int = 390, height: int = 844) -> None:
        self.process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await self._wait_ready()
        options = {
            "binary": CHROMIUM,
            "args": FLAGS + [f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
            "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0}},
        }
        value = await self._call("POST", "/session", {
            "capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = value["sessionId"]

    async def _wait_ready(self, timeout: float = 20.0) -> None:
        # chromedriver has no readiness signal but its /status: bounded poll.
        deadline = reactor.seconds() + timeout
        while True:
            try:
                response = await treq.get(self.base + "/status", timeout=2, persistent=False)
                data = await response.json()
                if data.get("value", {}).get("ready"):
                    return
            except Exception:
                pass
            if reactor.seconds() > deadline or (self.process and self.process.poll() is not None):
                raise WebDriverError("chromedriver did not start")
            await deferLater(reactor, 0.1, lambda: None)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        kw: dict[str, Any] = {"json": body} if body is not None else {}
        response = await treq.request(method, self.base + path, timeout=60, persistent=False, **kw)
        data = await response.json()
        if response.code != 200:
            raise WebDriverError(f"{method} {path}: {data.get('value', data)}")
        return data.get("value")

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    async def get(self, url: str) -> None:
        await self._call("POST", self._s("/url"), {"url": url})

    async def find(self, css: str) -> str:
        value = await self._call("POST", self._s("/element"), {"using": "css selector", "value": css})
        return value[ELEMENT]

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self._call("POST", self._s(f"/element/{element}/click"), {})

    async def script(self, source: str, *args: Any) -> Any:
        return await self._call("POST", self._s("/execute/sync"), {"script": source, "args": list(args)})

    async def wait_for(self, source: str, *args: Any, timeout: float = 20.0) -> Any:
        """Run *source* until it returns something truthy (bounded poll: a
        page offers no event to wait on from outside)."""
        deadline = reactor.seconds() + timeout
        while True:
            result = await self.script(source, *args)
            if result:
                return result
            if reactor.seconds() > deadline:
                text = await self.script("return document.body ? document.body.innerText : ''")
                raise AssertionError(f"page condition not met in {timeout} s: {source}\npage:\n{text}")
            await deferLater(reactor, 0.1, lambda: None)

    async def screenshot(self) -> bytes:
        return base64.b64decode(await self._call("GET", self._s("/screenshot")))

    async def close(self) -> None:
        try:
            if self.session is not None:
                await self._call("DELETE", self._s(""), {})
        finally:
            if self.process is not None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
