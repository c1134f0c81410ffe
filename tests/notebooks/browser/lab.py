"""A throw-away JupyterLab server for the browser test.

The server listens on 127.0.0.1 (a free port, token and password disabled) and serves a temp
COPY of ``notebooks/``, so the repo's notebooks are never saved with outputs. Its config, user
settings, workspaces and runtime files live in temp dirs: ``labconfig/page_config.json``
disables the news/announcements plugin and ``settings/`` turns off news fetching and notebook
windowing (so every cell is in the DOM).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """``MAMLVIZ_CHROMIUM``, else ``chromium`` on PATH, else Debian's ``/usr/bin/chromium``."""
    for candidate in (os.environ.get("MAMLVIZ_CHROMIUM"), shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running server: ``url`` is its base URL, ``root`` the served notebook copy."""

    process: subprocess.Popen
    url: str
    root: Path
    log: Path

    def shutdown_kernels(self) -> None:
        """Delete every session (and its kernel), so that chapters do not compete for CPU."""
        with urllib.request.urlopen(f"{self.url}/api/sessions", timeout=10) as response:
            sessions = json.loads(response.read())
        for session in sessions:
            request = urllib.request.Request(
                f"{self.url}/api/sessions/{session['id']}", method="DELETE"
            )
            urllib.request.urlopen(request, timeout=30).close()

    def stop(self) -> None:
        """Terminate the server's process group (server and kernels) and wait for it."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=20)
                return
            except subprocess.TimeoutExpired:
                continue


def start_lab(notebooks: Path, workdir: Path, timeout: float = 120.0) -> Lab:
    """Copy ``notebooks`` into ``workdir`` and start JupyterLab on it; wait until it answers."""
    root = workdir / "notebooks"
    shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    config, settings = workdir / "config", workdir / "settings"
    shutil.copytree(HERE / "labconfig", config / "labconfig")
    shutil.copytree(HERE / "settings", settings)
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "workspaces"),
        "OMP_NUM_THREADS": "1",  # tiny tensors: one thread per kernel is fastest
    }
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.allow_root=True",  # CI containers often run as root
        "--ServerApp.disable_check_xsrf=True",  # lets the test delete sessions over REST
        "--LabApp.extension_manager=readonly",  # no PyPI look-ups
        f"--notebook-dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
    ]
    log = workdir / "jupyterlab.log"
    with log.open("w") as out:
        # Own process group: stop() ends the server and the kernels it started, nothing else.
        process = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return Lab(process, url, root, log)
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()}")
