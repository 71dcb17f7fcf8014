"""A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`): no
websocket, no extra package. Messages are JSON objects separated by NUL bytes; the browser reads
commands on its fd 3 and writes replies and events on its fd 4.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """The browser named by $ELBOLAB_CHROMIUM, else the first Chromium on PATH."""
    named = os.environ.get("ELBOLAB_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class BrowserError(RuntimeError):
    """The browser did not start, or did not answer in time."""


class Chromium:
    """One headless browser with one page; `events` collects every event the page sent."""

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="elbolab-chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
            (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
            (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
        ]
        argv = [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        try:
            self.pid = os.posix_spawn(executable, argv, os.environ, file_actions=actions)
        except OSError as exc:
            raise BrowserError(f"{executable} could not be started: {exc}") from exc
        finally:
            for fd in (to_browser_r, from_browser_w, devnull):
                os.close(fd)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._replies: dict[int, queue.Queue] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = self._attach()

    # ---- transport
    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                for q in self._replies.values():
                    q.put({"error": {"message": "the browser closed the pipe"}})
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message and message["id"] in self._replies:
                    self._replies[message["id"]].put(message)
                elif "method" in message:
                    self.events.append(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """One command; its result, or BrowserError with the browser's message."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            self._replies[mid] = queue.Queue()
        message = {"id": mid, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            self._out.write(json.dumps(message).encode() + b"\0")
            reply = self._replies[mid].get(timeout=self.timeout)
        except (OSError, queue.Empty) as exc:
            raise BrowserError(f"{method}: no answer from the browser ({exc or 'timeout'})") from exc
        finally:
            self._replies.pop(mid, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _attach(self) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        return session

    def page(self, method: str, params: dict | None = None) -> dict:
        """A command to the page."""
        return self.send(method, params, self.session)

    # ---- what the tests ask
    def open(self, url: str, width: int, height: int = 900) -> None:
        """Load `url` in a viewport `width` CSS pixels wide (a phone below 500 px) and wait for its load event."""
        self.page(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        seen = len(self.events)
        self.page("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events[seen:]):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading in {self.timeout:.0f} s")
            time.sleep(0.02)

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value (JSON-ready), evaluated in the page."""
        result = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page (beyond the viewport) as a PNG."""
        data = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def console_errors(self, events: list[dict[str, Any]] | None = None) -> list[str]:
        """Errors the page logged, threw or had reported about it (failed loads included), in `events` (default:
        all so far)."""
        found = []
        for e in self.events if events is None else events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                found.append(p["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                found.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return found

    def requests(self, events: list[dict[str, Any]] | None = None) -> list[str]:
        """Every URL asked for in `events` (default: all so far), data: URIs left out."""
        return [
            e["params"]["request"]["url"]
            for e in (self.events if events is None else events)
            if e["method"] == "Network.requestWillBeSent" and not e["params"]["request"]["url"].startswith("data:")
        ]

    def close(self) -> None:
        """Ask the browser to quit, wait for it, remove its profile."""
        try:
            self.send("Browser.close")
        except BrowserError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        for f in (self._out, self._in):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
