"""A real ``camlens serve``: the command run in its own process, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPO, SAMPLE_IMAGES

httpx = pytest.importorskip("httpx", reason='pip install -e ".[test]" brings httpx')
pytest.importorskip("camlens.serve", reason="pip install 'camlens[serve]'")


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def rss(self) -> int:
        """The server process's resident memory, in bytes (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None and httpx.get(f"{self.url}/api/models", timeout=30).status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def start_server(tmp_path_factory) -> Iterator[Callable[..., Server]]:
    """``start_server(*options)``: ``camlens serve`` with EfficientNet-Lite0 and the sample photos
    (and ``options``), started in a fresh process and stopped after the module's tests."""
    started: list[Server] = []

    def start(*options: str) -> Server:
        port = _free_port()
        log = tmp_path_factory.mktemp("server") / "server.log"
        path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
        environment = dict(os.environ, PYTHONPATH=path)
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "camlens", "serve", "--port", str(port), "--only",
                 "--model", "efficientnet-lite0", "--samples", str(SAMPLE_IMAGES), "--log-level", "warning",
                 "--device", "cpu", *options],
                env=environment, stdout=output, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", process, log)
        started.append(server)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"camlens serve ended: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{server.url}/api/models", timeout=5).status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"camlens serve did not answer within 120 s: {log.read_text()[-2000:]}")

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
