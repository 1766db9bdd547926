"""Benchmark: HTTPS requests with curl, untraced vs probewatch sslsniff vs bpftrace.

A local HTTPS server (openssl s_server -WWW on a self-signed certificate, serving a file
of --size bytes) answers two workloads, each timed untraced, under ``probewatch
sslsniff`` (JSON to a file) and under bpftrace with uprobes/uretprobes on the same
OpenSSL functions (printing length and the first 64 bytes):

- ``procs``: -n sequential curl processes, one request each (process start-up dominates);
- ``keepalive``: one curl fetching the URL -k times over one connection (TLS calls dominate).

Reported: curl's CPU time (user + system) per workload, best of 3, the slowdown against
untraced, plaintext bytes captured per second of curl CPU time, and what was lost (the
tools' own counts). CPU time, not wall time: on a shared machine the wall time is
mostly other tenants' noise.

Run as root:  python3 bench/sslsniff_bench.py [-n 100] [-k 500] [--size 65536]
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
    """The CPU time (user + system) curl spent: on a shared, loaded machine wall time is
    mostly other tenants' noise, while a uprobe's cost lands in the traced process's
    system time (the trap, the BPF program, the copy)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if kind == "procs":
        for _ in range(n):
            subprocess.run(["curl", "-sk", "-o", "/dev/null", url], check=True)
    else:
        subprocess.run(["curl", "-sk", *(["-o", "/dev/null", url] * n)], check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def with_tracer(argv: list[str], kind: str, n: int, url: str, out: Path,
                ready: float, reps: int = 3) -> tuple[float, str]:
    """The best of ``reps`` runs of the workload under one tracer run."""
    with open(out, "wb") as fo, open(out.with_suffix(".err"), "wb") as fe:
        tr = subprocess.Popen(argv, stdout=fo, stderr=fe)
        time.sleep(ready)  # attach
        try:
            dt = min(workload(kind, n, url) for _ in range(reps))
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
    ap.add_argument("-n", type=int, default=100, help="curl processes (procs workload)")
    ap.add_argument("-k", type=int, default=500,
                    help="requests over one connection (keepalive workload)")
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
        for kind, n in (("procs", a.n), ("keepalive", a.k)):
            workload(kind, 5, url)  # warm caches
            base = min(workload(kind, n, url) for _ in range(3))
            dt, err = with_tracer([*CLI, "sslsniff", "--json", "--max-bytes", "16K"],
                                  kind, n, url, d / f"pw-{kind}.json", 4.0)
            summ = {}
            for line in err.splitlines():
                if line.startswith('{"summary"'):
                    summ = json.loads(line)["summary"]
            if not summ:
                print(f"probewatch sslsniff ({kind}) gave no summary:\n{err[-2000:]}",
                      file=sys.stderr)
            captured = 0
            with open(d / f"pw-{kind}.json") as f:
                for line in f:
                    if line.startswith('{"ts"'):
                        captured += json.loads(line)["fields"]["captured"]
            rows.append((kind, "untraced", base, "", ""))
            # captured: over the 3 runs; the rate is per run (best run's time)
            rows.append((kind, "probewatch sslsniff", dt,
                         f"{captured / 3 / dt / 1e6:.1f} MB/s",
                         f"lost {summ.get('lost', '?')} of {summ.get('generated', '?')}"))
            bt = shutil.which("bpftrace")
            if bt:
                script = BPFTRACE.replace("LIB", lib)
                dtb, errb = with_tracer([bt, "-e", script], kind, n, url,
                                        d / f"bt-{kind}.txt", 4.0)
                lines = (d / f"bt-{kind}.txt").read_text(errors="replace").splitlines()
                nbytes = sum(int(x.split()[1]) for x in lines
                             if len(x.split()) >= 2 and x.split()[1].isdigit())
                lost = [x for x in errb.splitlines() if "lost" in x.lower()]
                rows.append((kind, "bpftrace uprobes", dtb,
                             f"{nbytes / 3 / dtb / 1e6:.1f} MB/s (64 B shown each)",
                             "; ".join(lost) or "lost 0"))
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(d, ignore_errors=True)
    print(f"procs: {a.n} curl processes; keepalive: {a.k} requests on one connection; "
          f"{a.size}-byte bodies; best of 3")
    print(f"{'workload':<10} {'tracer':<22} {'cpu s':>8} {'slowdown':>9}  captured/s  loss")
    bases = {k: t for k, tr, t, _, _ in rows if tr == "untraced"}
    for k, tr, t, rate, loss in rows:
        print(f"{k:<10} {tr:<22} {t:8.2f} {t / bases[k]:8.2f}x  {rate}  {loss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
