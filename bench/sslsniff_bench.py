"""Benchmark: HTTPS requests with curl, untraced vs probewatch sslsniff vs bpftrace.

A local HTTPS server (openssl s_server -WWW on a self-signed certificate, serving a file
of --size bytes) answers two workloads, each timed untraced, under ``probewatch
sslsniff`` (JSON to a file) and under bpftrace with uprobes/uretprobes on the same
OpenSSL functions (printing length and the first 64 bytes):

- ``procs``: N sequential curl processes, one request each (process start-up dominates);
- ``keepalive``: one curl fetching the URL N times over one connection (TLS calls dominate).

Reported: wall time per workload, slowdown against untraced, plaintext bytes captured
per second of the traced run, and what was lost (the tools' own counts).

Run as root:  python3 bench/sslsniff_bench.py [-n 200] [--size 65536]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "probewatch"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(d: Path, size: int) -> tuple[subprocess.Popen[bytes], int]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj",
                    "/CN=localhost"], check=True, capture_output=True)
    (d / "f.bin").write_bytes(os.urandom(size))
    port = free_port()
    p = subprocess.Popen(["openssl", "s_server", "-quiet", "-WWW", "-accept", str(port),
                          "-cert", str(d / "cert.pem"), "-key", str(d / "key.pem")],
                         cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return p, port


def workload(kind: str, n: int, url: str) -> float:
    t = time.monotonic()
    if kind == "procs":
        for _ in range(n):
            subprocess.run(["curl", "-sk", "-o", "/dev/null", url], check=True)
    else:
        subprocess.run(["curl", "-sk", *(["-o", "/dev/null", url] * n)], check=True)
    return time.monotonic() - t


def with_tracer(argv: list[str], kind: str, n: int, url: str, out: Path,
                ready: float) -> tuple[float, str]:
    with open(out, "wb") as fo, open(out.with_suffix(".err"), "wb") as fe:
        tr = subprocess.Popen(argv, stdout=fo, stderr=fe)
        time.sleep(ready)  # attach
        try:
            dt = workload(kind, n, url)
            time.sleep(0.5)  # drain
        finally:
            tr.send_signal(signal.SIGINT)
            tr.wait(timeout=60)
    return dt, out.with_suffix(".err").read_text(errors="replace")


BPFTRACE = r"""
uprobe:LIB:SSL_write, uprobe:LIB:SSL_read { @buf[tid] = arg1; }
uretprobe:LIB:SSL_write, uretprobe:LIB:SSL_read /@buf[tid]/ {
  if ((int32)retval > 0) { printf("%d %d %r\n", pid, (int32)retval, buf(@buf[tid], 64)); }
  delete(@buf[tid]);
}
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200, help="requests per workload")
    ap.add_argument("--size", type=int, default=65536, help="response body bytes")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    from probewatch.elf.libs import find_library

    lib = os.path.realpath(find_library("libssl.so.3"))
    d = Path(tempfile.mkdtemp(prefix="pw-sslbench-"))
    srv, port = start_server(d, a.size)
    url = f"https://127.0.0.1:{port}/f.bin"
    rows = []
    try:
        for kind in ("procs", "keepalive"):
            workload(kind, 5, url)  # warm caches
            base = min(workload(kind, a.n, url) for _ in range(2))
            dt, err = with_tracer([*CLI, "sslsniff", "--json", "--max-bytes", "16K"],
                                  kind, a.n, url, d / f"pw-{kind}.json", 4.0)
            summ = {}
            for line in err.splitlines():
                if line.startswith('{"summary"'):
                    summ = json.loads(line)["summary"]
            captured = 0
            with open(d / f"pw-{kind}.json") as f:
                for line in f:
                    if line.startswith('{"ts"'):
                        captured += json.loads(line)["fields"]["captured"]
            rows.append((kind, "untraced", base, "", ""))
            rows.append((kind, "probewatch sslsniff", dt, f"{captured / dt / 1e6:.1f} MB/s",
                         f"lost {summ.get('lost', '?')} of {summ.get('generated', '?')}"))
            bt = shutil.which("bpftrace")
            if bt:
                script = BPFTRACE.replace("LIB", lib)
                dtb, errb = with_tracer([bt, "-e", script], kind, a.n, url,
                                        d / f"bt-{kind}.txt", 4.0)
                lines = (d / f"bt-{kind}.txt").read_text(errors="replace").splitlines()
                nbytes = sum(int(x.split()[1]) for x in lines
                             if len(x.split()) >= 2 and x.split()[1].isdigit())
                lost = [x for x in errb.splitlines() if "lost" in x.lower()]
                rows.append((kind, "bpftrace uprobes", dtb,
                             f"{nbytes / dtb / 1e6:.1f} MB/s (64 B shown each)",
                             "; ".join(lost) or "lost 0"))
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(d, ignore_errors=True)
    print(f"{a.n} requests of {a.size} bytes per workload")
    print(f"{'workload':<10} {'tracer':<22} {'time s':>8} {'slowdown':>9}  captured/s  loss")
    bases = {k: t for k, tr, t, _, _ in rows if tr == "untraced"}
    for k, tr, t, rate, loss in rows:
        print(f"{k:<10} {tr:<22} {t:8.2f} {t / bases[k]:8.2f}x  {rate}  {loss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
