"""Open an HTML file in headless Chromium and report what a reader would see.

Chromium is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe``
(JSON messages separated by NUL bytes, commands on the browser's fd 3, replies and events on
its fd 4, as Puppeteer's ``pipe: true`` does), so no network port, websocket library or
browser-automation package is needed. The browser runs with a fresh profile and no network
services, and is closed (or killed, by its own process id) before returning.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")


def find_chromium() -> str | None:
    """The Chromium executable: ``$VAELAB_CHROMIUM`` if set, else the first of
    :data:`CANDIDATES` on ``PATH``; None when there is none."""
    explicit = os.environ.get("VAELAB_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    """What the browser saw: every ``<img>`` (alt text, natural size, complete flag), console
    errors, uncaught exceptions and failed loads, the page title and the screenshot's path."""

    images: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None
    page_size: tuple[int, int] = (0, 0)

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [image for image in self.images if not image["naturalWidth"]]


class BrowserError(RuntimeError):
    pass


class _Pipe:
    """A DevTools-protocol connection over the two pipes of one Chromium process."""

    def __init__(self, write_fd: int, read_fd: int, proc: subprocess.Popen):
        self.write_fd, self.read_fd, self.proc = write_fd, read_fd, proc
        self.buffer = b""
        self.next_id = 0
        self.replies: dict[int, dict] = {}
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.write_fd, data):]
        return self.next_id

    def _pump(self, deadline: float) -> None:
        timeout = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.read_fd, 1 << 20)
        if not chunk:
            raise BrowserError(f"chromium closed the pipe (exit status {self.proc.poll()})")
        self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        for raw in messages:
            message = json.loads(raw)
            if "id" in message:
                self.replies[message["id"]] = message
            else:
                self.events.append(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send a command and wait for its result.

        Raises:
            BrowserError: an error reply, or no reply within ``timeout`` seconds.
        """
        call_id = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while call_id not in self.replies:
            if time.monotonic() > deadline:
                raise BrowserError(f"no reply to {method} within {timeout:.0f} s")
            self._pump(deadline)
        reply = self.replies.pop(call_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, name: str, session: str | None, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == name and event.get("sessionId") == session:
                    return event
            if time.monotonic() > deadline:
                raise BrowserError(f"no {name} event within {timeout:.0f} s")
            self._pump(deadline)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(deadline)


_IMAGES_JS = """
(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  return images.map(i => ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
                           naturalHeight: i.naturalHeight}));
})()
"""


def _errors_of(events: list[dict], session: str) -> list[str]:
    errors = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])]
            errors.append("console." + params["type"] + ": " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description", "")
            errors.append(f"uncaught exception: {details.get('text', '')} {description}".strip())
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source', 'log')} error: {entry.get('text', '')} {entry.get('url', '')}".strip())
    return errors


def inspect_html(path: str | Path, screenshot: str | Path | None = None, width: int = 1280,
                 max_height: int = 12000, timeout: float = 60.0, chromium: str | None = None) -> PageCheck:
    """Load ``path`` in headless Chromium, wait for the load event and every image's decoding,
    and return the images' natural sizes and every console error, uncaught exception and
    failed load. With ``screenshot`` the whole page (up to ``max_height`` CSS pixels, at
    ``width``) is saved there as PNG.

    Raises:
        BrowserError: Chromium cannot be found, does not start or does not answer in time.
    """
    executable = chromium or find_chromium()
    if not executable:
        raise BrowserError("chromium not found")
    url = Path(path).resolve().as_uri()
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    # Move the child's ends above fd 10 so bash can place them on fds 3 and 4 without clashes.
    child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
    child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(to_browser_r)
    os.close(from_browser_w)
    with tempfile.TemporaryDirectory(prefix="vaelab-chromium-") as profile:
        command = [shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-',
                   executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"]
        proc = subprocess.Popen(command, pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(child_r)
        os.close(child_w)
        pipe = _Pipe(to_browser_w, from_browser_r, proc)
        try:
            return _inspect(pipe, url, screenshot, width, max_height, timeout)
        except BrowserError as exc:
            stderr = b""
            if proc.poll() is not None and proc.stderr:
                stderr = proc.stderr.read()[-2000:]
            raise BrowserError(f"{exc}; chromium stderr: {stderr.decode(errors='replace')}") from None
        finally:
            try:
                pipe.send("Browser.close")
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()
            os.close(to_browser_w)
            os.close(from_browser_r)


def _inspect(pipe: _Pipe, url: str, screenshot, width: int, max_height: int, timeout: float) -> PageCheck:
    target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        pipe.call(f"{domain}.enable", session=session)
    pipe.call("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    pipe.events.clear()
    navigation = pipe.call("Page.navigate", {"url": url}, session=session)
    if navigation.get("errorText"):
        raise BrowserError(f"cannot open {url}: {navigation['errorText']}")
    pipe.wait_event("Page.loadEventFired", session, timeout)
    result = pipe.call("Runtime.evaluate", {"expression": _IMAGES_JS, "awaitPromise": True,
                                            "returnByValue": True}, session=session, timeout=timeout)
    images = result.get("result", {}).get("value", [])
    title = pipe.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                      session=session)["result"].get("value", "")
    pipe.drain(0.3)  # late console messages
    metrics = pipe.call("Page.getLayoutMetrics", session=session)
    size = metrics.get("cssContentSize") or metrics.get("contentSize", {})
    page_size = (int(size.get("width", width)), int(size.get("height", 900)))
    check = PageCheck(images=images, errors=_errors_of(pipe.events, session), title=title, page_size=page_size)
    if screenshot is not None:
        clip = {"x": 0, "y": 0, "width": page_size[0], "height": min(page_size[1], max_height), "scale": 1}
        shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip},
                         session=session, timeout=timeout)
        import base64

        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        check.screenshot = Path(screenshot)
    return check
