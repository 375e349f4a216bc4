"""``secmod serve`` as a real process on a loopback port, for multi-process tests and the bench.

    with ServeProcess(config_file, workers=2) as server:
        httpx.get(server.url + "/healthz")
        server.worker_pids()    # the uvicorn workers under the supervisor

Every wait is bounded; :meth:`ServeProcess.stop` ends the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["ServeProcess", "free_port"]

START_SECONDS = 90.0  # two workers importing FastAPI on a busy 2-core machine take ~15 s


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One ``secmod serve`` on ``127.0.0.1`` with its own port, log file and environment."""

    def __init__(
        self,
        config: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.workers = workers
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file or config.with_name(f"serve-{self.port}.log")
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ServeProcess:
        command = [
            sys.executable,
            "-m",
            "secmod.host.cli",
            "--config",
            str(self.config),
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.options,
        ]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Until /healthz answers 200 from every worker that is running (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"secmod serve exited with {self.process.returncode}:\n{self.log()}"
                )
            if self._healthy() and len(self.worker_pids()) >= (
                self.workers if self.workers > 1 else 0
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"secmod serve did not get ready in {timeout:.0f} s:\n{self.log()}"
                )
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def worker_pids(self) -> list[int]:
        """The worker processes (children started by multiprocessing's spawn)."""
        if self.process is None or self.workers == 1:
            return []
        pids = []
        for child in _children(self.process.pid):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.append(child)
        return pids

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def __enter__(self) -> ServeProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in (task / "children").read_text().split())
    return found
