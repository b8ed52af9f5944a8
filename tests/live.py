"""A live server (uvicorn in a thread) and headless Chromium, for tests of what a browser sees.

Chromium runs offline here whatever the machine can reach: every host name but the local
address fails to resolve, so a page that still needs a CDN shows it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.sync.client import connect

from app.embedded import free_port


@contextlib.contextmanager
def serve(app: Any, port: int | None = None, **options: Any) -> Iterator[str]:
    """Run an ASGI app on a free local port; yield its base URL. ``options`` go to
    ``uvicorn.Config`` (``app.cli.uvicorn_options`` for the production ones)."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium_or_skip() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail("chromium is missing: scripts/bootstrap installs it (Debian `chromium`)")
    pytest.skip("chromium is not installed (scripts/bootstrap installs it as root)")


class Browser:
    """Headless Chromium driven over the DevTools protocol. WebGL runs on SwiftShader."""

    def __init__(self, binary: str, profile: Path) -> None:
        port = free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",  # root in CI containers
                "--use-angle=swiftshader",  # WebGL on the CPU
                "--enable-unsafe-swiftshader",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--window-size=1000,700",
                # Offline: only the local address resolves (no CDN, no font server).
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(profile)},
        )
        self._ids = 0
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
                    pages = [t for t in json.loads(answer.read()) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        self._connection = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20)
        self.socket = self._connection.__enter__()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        self.socket.send(json.dumps({"id": self._ids, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self._ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, awaitPromise=True)
        return answer["result"].get("value")

    def load(self, url: str, ready: str, timeout: float = 90) -> None:
        """Navigate, then wait until the JavaScript expression ``ready`` is true."""
        self.call("Page.navigate", url=url)
        self.load_wait(ready, timeout)

    def load_wait(self, ready: str, timeout: float = 90) -> None:
        """Wait, on the page already loaded, until ``ready`` is true."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never became ready: {ready}")
            time.sleep(0.25)

    def screenshot(self, out: Path) -> None:
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.__exit__(None, None, None)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def browser(profile: Path) -> Iterator[Browser]:
    chrome = Browser(chromium_or_skip(), profile)
    try:
        yield chrome
    finally:
        chrome.close()


class KerbsideProcess:
    """``kerbside serve`` in its own process (real uvicorn, the production protocol and
    options), on a configured database. Its output goes to ``log``."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                env={
                    **os.environ,
                    "KERBSIDE_ENV": "test",
                    "KERBSIDE_LOG_JSON": "false",
                    **self._env,
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kerbside serve did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or the OOM killer would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def kerbside_process(database_url: str, log: Path, **env: str) -> Iterator[KerbsideProcess]:
    """A started ``kerbside serve`` on ``database_url``; ``env``: more ``KERBSIDE_*`` values."""
    server = KerbsideProcess(free_port(), {"KERBSIDE_DATABASE_URL": database_url, **env}, log)
    try:
        server.start()
        yield server
    finally:
        server.stop()
