"""sslsniff end to end on loopback: real TLS clients (curl/OpenSSL, Python ssl, gnutls-cli,
a Go crypto/tls client, a process that loads libssl with dlopen) against a local HTTPS
server with a self-signed certificate; the plaintext each way is compared byte for byte
with what the server saw, and the connection with the server's view of the client."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import CLI, run_cli, summary_of

pytestmark = pytest.mark.integration

SERVER = r'''
import hashlib, http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        ip, port = self.client_address[:2]
        if self.path == "/big":
            self._reply(bytes(range(256)) * 4096, "application/octet-stream")  # 1 MiB
        else:
            self._reply(f"pw-body {self.path} from {ip}:{port}\n".encode())
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        data = self.rfile.read(n)
        self._reply(f"got {len(data)} sha256 {hashlib.sha256(data).hexdigest()}\n".encode())
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
'''


def _need(tool: str) -> str:
    p = shutil.which(tool)
    if not p:
        pytest.fail(f"{tool} is needed for this test (scripts/install.sh installs it)")
    return p


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A local HTTPS server (Python ssl, self-signed certificate made here): its port."""
    d = tmp_path_factory.mktemp("tls")
    openssl = _need("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj",
                    "/CN=localhost"], check=True, capture_output=True)
    (d / "server.py").write_text(SERVER)
    p = subprocess.Popen([sys.executable, str(d / "server.py"), str(d / "cert.pem"),
                          str(d / "key.pem")], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        yield port
    finally:
        p.kill()
        p.wait()


def _events(out: str) -> list[dict[str, Any]]:
    evs = []
    for line in out.splitlines():
        if line.startswith('{"ts"'):
            evs.append(json.loads(line))
    return evs


def _data(ev: dict[str, Any]) -> bytes:
    d = ev["fields"]["data"]
    if isinstance(d, dict):
        return base64.b64decode(d["b64"])
    return str(d).encode()


def _joined(evs: list[dict[str, Any]], direction: str) -> bytes:
    return b"".join(_data(e) for e in evs if e["fields"]["direction"] == direction)


def test_curl_request_and_body_with_the_connection(bpf: None, https: int,
                                                   tmp_path: Path) -> None:
    curl = _need("curl")
    cap = tmp_path / "tls.db"
    r = run_cli("sslsniff", "--json", "-o", str(cap), "--", curl, "-sk",
                f"https://127.0.0.1:{https}/pw-a")
    assert r.returncode == 0, r.stderr
    evs = [e for e in _events(r.stdout) if e["comm"] == "curl"]
    writes = [e for e in evs if e["event"] == "tls:write"]
    assert writes, (r.stdout, r.stderr)
    req = _data(writes[0])
    assert req.startswith(b"GET /pw-a HTTP/1.1\r\n"), req
    reads = _joined(evs, "read")
    # the body the server sent names the client's address as the server saw it
    body_line = [ln for ln in r.stdout.splitlines() if ln.startswith("pw-body")]
    assert body_line, r.stdout
    body = (body_line[0] + "\n").encode()
    assert reads.endswith(b"\r\n\r\n" + body), reads
    client = body_line[0].rsplit(" ", 1)[1]
    for e in writes + [e for e in evs if e["event"] == "tls:read"]:
        f = e["fields"]
        assert f["library"] == "openssl" and f["function"] in ("SSL_write", "SSL_read")
        assert f["len"] == f["captured"] == len(_data(e)) and f["cut"] == 0
        assert (f["daddr"], f["dport"]) == ("127.0.0.1", https), f
        assert f"{f['saddr']}:{f['sport']}" == client, f
        assert f["fd"] >= 3 and f["latency_ns"] > 0
        assert e["pid"] == e["tid"] and e["fields"]["lib"].endswith(".so.3")
    s = summary_of(r.stderr)
    assert s["lost"] == 0 and s["read_failed"] == 0
    # -o: the same records in a capture file
    q = run_cli("query", str(cap), "--json",
                "SELECT event, json_extract(fields, '$.data') AS data, "
                "json_extract(fields, '$.dport') AS dport FROM events ORDER BY ts")
    rows = [json.loads(x) for x in q.stdout.splitlines()]
    assert rows and rows[0]["event"] == "tls:write", (q.stdout[:2000], q.stderr)
    assert rows[0]["data"].startswith("GET /pw-a HTTP/1.1\r\n") and rows[0]["dport"] == https
    assert any(str(x["data"]) == body.decode() for x in rows[1:]), rows


def test_text_output_shows_request_between_markers(bpf: None, https: int) -> None:
    curl = _need("curl")
    r = run_cli("sslsniff", "--", curl, "-sk", f"https://127.0.0.1:{https}/pw-text")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("WRITE/SEND"))
    assert " curl " in lines[i] and f"-> 127.0.0.1:{https}" in lines[i], lines[i]
    assert lines[i + 1] == "----- DATA -----"
    assert lines[i + 2] == "GET /pw-text HTTP/1.1\\r", lines[i + 2]  # CR escaped, not raw
    # --no-data: the records (lengths, connection) without a byte of data copied
    r = run_cli("sslsniff", "--no-data", "--", curl, "-sk", f"https://127.0.0.1:{https}/nd")
    heads = [ln for ln in r.stdout.splitlines() if ln.startswith(("WRITE/SEND", "READ/RECV"))]
    assert heads and heads[0].startswith("WRITE/SEND") and "----- DATA" not in r.stdout
    assert "sslsniff: 0 plaintext bytes captured" in r.stderr, r.stderr


PY_CLIENT = r'''
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
port, n = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as s:
    body = bytes(range(256)) * (n // 256)
    s.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode())
    s.sendall(body)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
sys.stdout.write("REPLY " + got.split(b"\r\n\r\n", 1)[1].decode())
'''


def _py_client(tmp_path: Path) -> str:
    p = tmp_path / "client.py"
    p.write_text(PY_CLIENT)
    return str(p)


def test_python_ssl_client_exact_each_way(bpf: None, https: int, tmp_path: Path) -> None:
    import hashlib

    r = run_cli("sslsniff", "--json", "--", sys.executable, _py_client(tmp_path), str(https),
                "4096")
    assert r.returncode == 0, r.stderr
    evs = _events(r.stdout)
    body = bytes(range(256)) * 16
    sent = _joined(evs, "write")
    assert sent == (b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Length: 4096\r\n\r\n" + body)
    want = f"got 4096 sha256 {hashlib.sha256(body).hexdigest()}\n".encode()
    assert _joined(evs, "read").endswith(b"\r\n\r\n" + want)
    assert {e["fields"]["function"] for e in evs} <= {"SSL_write_ex", "SSL_read_ex"}
    assert all(e["fields"]["dport"] == https for e in evs)


def test_one_megabyte_whole_or_cut_to_the_byte(bpf: None, https: int, tmp_path: Path) -> None:
    body = bytes(range(256)) * 4096
    curl = _need("curl")
    # a 1 MiB SSL_write_ex: cut at 16 KiB by default, counted exactly; and a 1 MiB
    # response read by curl in 16 KiB records: every byte captured
    r = run_cli("sslsniff", "--json", "--", "sh", "-c",
                f"{sys.executable} {_py_client(tmp_path)} {https} {len(body)} && "
                f"{curl} -sk -o /dev/null https://127.0.0.1:{https}/big")
    assert r.returncode == 0, r.stderr
    evs = _events(r.stdout)
    big = [e for e in evs if e["fields"]["len"] == len(body)]
    assert len(big) == 1, [e["fields"]["len"] for e in evs]
    f = big[0]["fields"]
    assert f["captured"] == 16384 and f["cut"] == len(body) - 16384
    assert f["truncated"] == ["data"] and _data(big[0]) == body[:16384]
    reads = _joined([e for e in evs if e["comm"] == "curl"], "read")
    assert reads.endswith(b"\r\n\r\n" + body) and len(reads.split(b"\r\n\r\n", 1)[1]) == len(body)
    assert summary_of(r.stderr)["lost"] == 0
    # with --max-bytes 1M the same write comes whole (joined from 8 KiB ring records)
    r = run_cli("sslsniff", "--json", "--max-bytes", "1M", "--", sys.executable,
                _py_client(tmp_path), str(https), str(len(body)))
    big = [e for e in _events(r.stdout) if e["fields"]["len"] == len(body)]
    assert len(big) == 1 and big[0]["fields"]["cut"] == 0
    assert _data(big[0]) == body
    assert summary_of(r.stderr)["lost"] == 0


def test_gnutls_cli_exact_each_way(bpf: None, https: int, tmp_path: Path) -> None:
    gc = _need("gnutls-cli")
    req = b"GET /gnu HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    (tmp_path / "req").write_bytes(req)
    r = run_cli("sslsniff", "--json", "--", "sh", "-c",
                f"{gc} --insecure -p {https} 127.0.0.1 <{tmp_path / 'req'} 2>/dev/null")
    evs = [e for e in _events(r.stdout) if e["fields"]["library"] == "gnutls"]
    assert _joined(evs, "write") == req, (r.stdout, r.stderr)
    reads = _joined(evs, "read")
    assert reads.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reads.endswith(b"\r\n\r\npw-body /gnu from 127.0.0.1:%d\n" % evs[0]["fields"]["sport"])
    assert {e["fields"]["function"] for e in evs} == {"gnutls_record_send", "gnutls_record_recv"}


DLOPEN_CLIENT = r'''
import ctypes, socket, sys, time
time.sleep(1.5)                               # tracing has started by now
lib = ctypes.CDLL(sys.argv[1])                # dlopen() a libssl sslsniff has not seen
time.sleep(float(sys.argv[3]))
V = ctypes.c_void_p
lib.TLS_client_method.restype = V
lib.SSL_CTX_new.restype = V; lib.SSL_CTX_new.argtypes = [V]
lib.SSL_new.restype = V; lib.SSL_new.argtypes = [V]
lib.SSL_set_fd.argtypes = [V, ctypes.c_int]
lib.SSL_connect.argtypes = [V]
lib.SSL_write.argtypes = [V, ctypes.c_char_p, ctypes.c_int]
lib.SSL_read.argtypes = [V, ctypes.c_char_p, ctypes.c_int]
ctx = lib.SSL_CTX_new(lib.TLS_client_method())
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
ssl = lib.SSL_new(ctx); lib.SSL_set_fd(ssl, s.fileno())
assert lib.SSL_connect(ssl) == 1
req = b"GET /dl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
assert lib.SSL_write(ssl, req, len(req)) == len(req)
buf = ctypes.create_string_buffer(4096); got = b""
while True:
    n = lib.SSL_read(ssl, buf, 4096)
    if n <= 0:
        break
    got += buf.raw[:n]
print("GOT", got.split(b"\r\n\r\n", 1)[1].decode().strip())
'''


def test_library_loaded_by_dlopen_after_start(bpf: None, https: int, tmp_path: Path) -> None:
    from probewatch.elf.libs import find_library

    # a copy of libssl at a path no probe knows: found by the rescan of the maps
    src = find_library("libssl.so.3")
    lib = tmp_path / "libssl.so.3"
    shutil.copy(src, lib)
    (tmp_path / "dl.py").write_text(DLOPEN_CLIENT)
    r = run_cli("sslsniff", "--json", "--rescan", "0.2", "--", sys.executable,
                str(tmp_path / "dl.py"), str(lib), str(https), "1.0")
    assert r.returncode == 0, r.stderr
    evs = [e for e in _events(r.stdout) if e["fields"]["lib"].endswith(str(lib))]
    assert _joined(evs, "write") == b"GET /dl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _joined(evs, "read").endswith(b"pw-body /dl from 127.0.0.1:%d\n"
                                         % evs[0]["fields"]["sport"])


def test_binary_without_tls_says_what_was_searched(bpf: None) -> None:
    r = run_cli("sslsniff", "--no-system-libs", "--rescan", "0", "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "no TLS library" in ln]
    assert len(lines) == 1, r.stderr
    assert "/usr/bin/true" in lines[0] and "SSL_write" in lines[0] and "DT_NEEDED" in lines[0]


GO_CLIENT = r'''
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", "127.0.0.1:"+os.Args[1], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		panic(err)
	}
	req := "GET /go HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(c)
	fmt.Printf("%d\n", len(b))
}
'''


def _go_client(tmp_path: Path) -> str:
    """The Go client, built once per source (tests/targets/bin, like the C targets)."""
    import hashlib

    from conftest import BUILD  # tests/conftest.py

    go = _need("go")
    tag = hashlib.sha256(GO_CLIENT.encode()).hexdigest()[:12]
    exe = BUILD / f"pw_goclient_{tag}"
    if exe.exists():
        return str(exe)
    BUILD.mkdir(parents=True, exist_ok=True)
    (tmp_path / "main.go").write_text(GO_CLIENT)
    (tmp_path / "go.mod").write_text("module pwgo\n\ngo 1.19\n")
    cache = Path(os.environ.get("PROBEWATCH_GOCACHE", "/tmp/probewatch-test-gocache"))
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOCACHE": str(cache), "CGO_ENABLED": "0",
           "GOPATH": str(tmp_path / "gopath"), "GOTOOLCHAIN": "local"}
    subprocess.run([go, "build", "-o", str(tmp_path / "goclient"), "."], cwd=tmp_path,
                   env=env, check=True, capture_output=True, timeout=300)
    shutil.move(str(tmp_path / "goclient"), exe)
    return str(exe)


def test_go_crypto_tls_client(bpf: None, https: int, tmp_path: Path) -> None:
    exe = _go_client(tmp_path)
    r = run_cli("sslsniff", "--json", "--", exe, str(https))
    assert r.returncode == 0, r.stderr
    evs = [e for e in _events(r.stdout) if e["fields"]["library"] == "go"]
    assert _joined(evs, "write") == b"GET /go HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reads = _joined(evs, "read")
    n = int([ln for ln in r.stdout.splitlines() if ln.isdigit()][0])
    assert len(reads) == n and reads.endswith(
        b"pw-body /go from 127.0.0.1:%d\n" % evs[0]["fields"]["sport"])
    assert all(e["fields"]["dport"] == https for e in evs)


def test_static_openssl_in_the_executable(bpf: None, https: int) -> None:
    from conftest import build_c  # tests/conftest.py

    exe = build_c("tls_static_client", "-Wl,-Bstatic", "-lssl", "-lcrypto", "-Wl,-Bdynamic",
                  "-ldl", "-lpthread")
    # no system libraries probed: only the executable's own SSL_write/SSL_read
    r = run_cli("sslsniff", "--json", "--no-system-libs", "--", str(exe), str(https), "/st")
    assert r.returncode == 0, r.stderr
    evs = _events(r.stdout)
    assert evs and all(e["fields"]["lib"] == str(exe) for e in evs), r.stderr
    assert _joined(evs, "write") == b"GET /st HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _joined(evs, "read").endswith(b"pw-body /st from 127.0.0.1:%d\n"
                                         % evs[0]["fields"]["sport"])


LOOP_CLIENT = r'''
import socket, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
print("ready", flush=True)
for i in range(60):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw, \
            ctx.wrap_socket(raw) as s:
        s.sendall(f"GET /loop{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        while s.recv(4096):
            pass
    time.sleep(0.2)
'''


def test_running_process_by_pid_and_comm_filter(bpf: None, https: int, tmp_path: Path) -> None:
    (tmp_path / "loop.py").write_text(LOOP_CLIENT)
    p = subprocess.Popen([sys.executable, str(tmp_path / "loop.py"), str(https)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        r = run_cli("sslsniff", "--json", "-p", str(p.pid), "-d", "3")
        evs = _events(r.stdout)
        assert evs and {e["pid"] for e in evs} == {p.pid}, r.stderr
        reqs = [_data(e) for e in evs if e["fields"]["direction"] == "write"]
        assert reqs and all(x.startswith(b"GET /loop") for x in reqs)
        # machine-wide with --comm: the loop (python3) is left out in the kernel
        curl = _need("curl")
        pr = subprocess.Popen([*CLI, "sslsniff", "--comm", "curl", "-d", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert pr.stdout is not None
        assert pr.stdout.readline().startswith("FUNC ")  # tracing is on
        subprocess.run([curl, "-sk", "-o", "/dev/null", f"https://127.0.0.1:{https}/c1"],
                       check=True)
        out, err = pr.communicate(timeout=60)
        heads = [ln for ln in out.splitlines() if ln.startswith(("WRITE/SEND", "READ/RECV"))]
        assert heads and all(ln.split()[2] == "curl" for ln in heads), out[:3000]
        assert "GET /c1 HTTP/1.1\\r" in out and "/loop" not in out
    finally:
        p.kill()
        p.wait()
