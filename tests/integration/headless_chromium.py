"""A real headless Chromium, driven over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` puts the protocol on file descriptors 3 (to the browser)
and 4 (from it), messages ended by a NUL byte: no port is opened, and nothing but the
page itself could reach a network. A reader thread routes each answer to its call by
``id`` and keeps every event, so a test can read the requests a page made
(``Network.requestWillBeSent``) after it loaded.

Debian's ``chromium`` package is the browser (``make debian`` installs it; :func:`find`
installs it where it is missing and apt-get can). Runs as root, hence ``--no-sandbox``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

CALL_TIMEOUT = 60.0  # seconds: generous, a busy 2-core machine renders slowly
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find() -> str | None:
    """The chromium executable; installs Debian's package first when it is missing."""
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
        path = shutil.which("chromium")
    return path


class Browser:
    """One Chromium process with a fresh profile, and its protocol pipe."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="flowops-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # above fd 4, so that placing them on 3 and 4 in the child overwrites neither
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,  # fds 3 and 4 must survive; Python's own fds are close-on-exec
            preexec_fn=lambda: _place_fds(*ends),
        )
        for fd in ends:
            os.close(fd)
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait for its answer; raises RuntimeError on an error."""
        with self._ready:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        with self._ready:
            if not self._ready.wait_for(lambda: ident in self._answers, CALL_TIMEOUT):
                raise TimeoutError(f"no answer to {method} in {CALL_TIMEOUT} s")
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def wait_event(self, method: str, session: str, after: int = 0) -> dict[str, Any]:
        """The first event ``method`` of ``session`` at or after index ``after``."""

        def found() -> dict[str, Any] | None:
            for event in self.events[after:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            return None

        with self._ready:
            if not self._ready.wait_for(lambda: found() is not None, CALL_TIMEOUT):
                raise TimeoutError(f"no {method} in {CALL_TIMEOUT} s")
        event = found()
        assert event is not None
        return event

    def close(self) -> None:
        """Stop the browser (this process only) and remove its profile."""
        with suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close")
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        self._reader.join(timeout=10)
        os.close(self._from_browser)
        self._profile.cleanup()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._ready:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                self._ready.notify_all()


def _place_fds(to_browser: int, from_browser: int) -> None:
    """In the child: the protocol's ends on fds 3 and 4, where Chromium expects them."""
    os.dup2(to_browser, 3)
    os.dup2(from_browser, 4)


class Page:
    """One tab of a :class:`Browser` at a given viewport size, with network events on."""

    def __init__(self, browser: Browser, width: int, height: int) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for method in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.call(method)
        self.width, self.height = width, height
        self._viewport(width, height)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        mark = len(self.browser.events)
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session, mark)

    def evaluate(self, expression: str) -> Any:
        """The expression's value (promises awaited), as JSON."""
        answer = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"page script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def requests(self) -> list[str]:
        """Every URL this page asked for, in order."""
        return [
            event["params"]["request"]["url"]
            for event in self.browser.events
            if event.get("method") == "Network.requestWillBeSent"
            and event.get("sessionId") == self.session
        ]

    def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        """A PNG of the viewport, or of the whole page (at most 16,000 pixels high).

        For the whole page the viewport is made as tall as the page first: content
        outside the viewport may not be painted (``content-visibility: auto``).
        """
        if full_page:
            width = self.evaluate("window.innerWidth")
            height = min(self.evaluate("document.documentElement.scrollHeight"), 16_000)
            self._viewport(width, height)
            self.evaluate(_TWO_FRAMES)
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        if full_page:
            self._viewport(self.width, self.height)

    def _viewport(self, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )


_TWO_FRAMES = "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
"""Resolves once the page has painted a frame after the last change."""


@contextmanager
def browser(executable: str) -> Iterator[Browser]:
    """A browser for the ``with`` block, closed after it."""
    chromium = Browser(executable)
    try:
        yield chromium
    finally:
        chromium.close()
