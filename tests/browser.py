"""What the browser tests share: Debian chromium and its flags, a restartable dashboard server
on 127.0.0.1 with its own OPTIM_HOME, and waiting for the app to settle (see ../shared/TESTING.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as root, without the networking flags chromium floods the closed network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APP = "[data-testid='stApp']"


def require_chromium():
    """Skip the calling test module without Debian's chromium; return playwright's sync API."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
            "never `playwright install`",
            allow_module_level=True,
        )
    return pytest.importorskip("playwright.sync_api")


class Server:
    """``streamlit run app.py`` on 127.0.0.1 with its own OPTIM_HOME and store; restartable."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home, self.url = home, f"sqlite:///{home / 'runs.db'}"
        self.extra = env or {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "OPTIM_HOME": str(self.home), "OPTIM_DB_URL": self.url, **self.extra}
        env.pop("OPTIM_TOKEN", None)
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true"]
        cmd += [f"--server.port={self.port}", "--server.address=127.0.0.1"]
        cmd += ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
        with open(self.home / "streamlit.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:  # /_stcore/health only: no request that runs the app before the test's
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        SHOTS.mkdir(parents=True, exist_ok=True)
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not come up: {self.log()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the server and any sweep worker it started."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        from optim.store import Store

        for pid in Store(self.url).runs()["pid"].dropna():
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def log(self) -> str:
        return (self.home / "streamlit.log").read_text(errors="replace")


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the app is connected and its script has finished running."""
    page.wait_for_timeout(150)
    page.wait_for_selector(f"{APP}[data-test-connection-state='CONNECTED']", state="attached")
    page.wait_for_selector(
        f"{APP}[data-test-script-state='notRunning']", state="attached", timeout=timeout
    )
