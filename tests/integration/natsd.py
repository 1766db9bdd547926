"""Real nats-server processes for the fleet tests: one node or a 3-node cluster on
loopback, each on free ports with its own store directory, stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nats-server did not listen on {port}")


class Natsd:
    """One nats-server -js (``conf``: extra config text, e.g. authorization/tls)."""

    def __init__(self, tmp: Path, name: str = "n1", port: int | None = None,
                 conf: str = "", cluster: str = "") -> None:
        assert os.path.exists(NATS_SERVER), "nats-server is not installed (apt nats-server)"
        self.port = port or free_port()
        self.name = name
        self.dir = tmp / f"nats-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "server.conf"
        self.conf.write_text(
            f'server_name: "{name}"\nlisten: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n{cluster}\n{conf}\n')
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Natsd:
        log = open(self.dir / "log", "ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self.conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_port(self.port)
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return (self.dir / "log").read_text(errors="replace")


def cluster(tmp: Path, n: int = 3) -> list[Natsd]:
    cports = [free_port() for _ in range(n)]
    nodes = []
    for i in range(n):
        routes = ", ".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(cports) if j != i)
        cl = (f'cluster {{ name: "pw", listen: "127.0.0.1:{cports[i]}", '
              f"routes: [{routes}] }}")
        nodes.append(Natsd(tmp, name=f"c{i + 1}", cluster=cl))
    for nd in nodes:
        nd.start()
    return nodes
