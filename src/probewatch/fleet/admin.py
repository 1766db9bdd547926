"""``probewatch fleet``: create the stream, write per-host credentials and permissions.

:func:`init_stream` creates (or updates) the ``PROBEWATCH`` stream on subjects
``probewatch.>``: file storage, ``replicas`` copies, limits on bytes and age, the
2-minute duplicate window the agents' message ids rely on. On a new cluster the
stream cannot be created until the cluster has a JetStream meta leader (about 11 s on
loopback here), so it retries until ``wait`` seconds passed.

:func:`write_auth` writes what a NATS server needs to hold every host to its own
subjects: ``auth.conf`` (include it in nats-server's config), one credentials file per
host and one for the collector. A host user may publish only ``probewatch.<host>.>``
and subscribe only to its own inbox prefix ``_INBOX_<host>.>`` (the PubAcks arrive
there; with the shared default ``_INBOX.>`` one host could read another's replies, and
without any inbox permission no ack would reach it). The collector user may read the
stream through its durable consumer; the admin user may do everything.

Example::

    write_auth("fleet-auth/", ["web1", "db1"])      # then: nats-server -c with include
    asyncio.run(init_stream("nats://nats:4222", replicas=3, creds="fleet-auth/admin.creds"))
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ProbewatchError
from .connect import Creds, TlsFiles, connect_kwargs
from .wire import PREFIX, STREAM, host_token

__all__ = ["init_stream", "write_auth", "inbox_prefix"]


def inbox_prefix(host: str) -> str:
    return f"_INBOX_{host}"


async def init_stream(url: str, *, replicas: int = 1, max_bytes: int = -1,
                      max_age_s: float = 0, creds: str | Creds | None = None,
                      tls: TlsFiles | None = None, wait: float = 30.0,
                      stream: str = STREAM) -> dict[str, Any]:
    """Create or update the stream; returns its config as a dict."""
    import nats
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    async def quiet(e: Exception) -> None:
        return None

    try:
        nc = await nats.connect(**connect_kwargs(url, creds=creds, tls=tls,
                                                 name="probewatch-fleet-init",
                                                 max_reconnect_attempts=3),
                                error_cb=quiet)
    except Exception as e:  # noqa: BLE001 - one message for every way connecting fails
        raise ProbewatchError(f"cannot connect to {url}: {e or type(e).__name__}") from None
    cfg = StreamConfig(name=stream, subjects=[f"{PREFIX}.>"], storage=StorageType.FILE,
                       num_replicas=replicas, max_bytes=max_bytes,
                       max_age=max_age_s or None, duplicate_window=120.0,
                       retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD)
    end = time.monotonic() + wait
    last: Exception | None = None
    try:
        js = nc.jetstream(timeout=5)
        while True:
            try:
                try:
                    info = await js.add_stream(cfg)
                except Exception as e:  # noqa: BLE001
                    if "already in use" not in str(e):
                        raise
                    info = await js.update_stream(cfg)
                return {"name": info.config.name, "subjects": info.config.subjects,
                        "replicas": info.config.num_replicas,
                        "storage": str(getattr(info.config.storage, "value",
                                               info.config.storage)),
                        "max_bytes": info.config.max_bytes, "max_age": info.config.max_age,
                        "duplicate_window": info.config.duplicate_window}
            except Exception as e:  # noqa: BLE001 - no meta leader yet: retry
                last = e
                if time.monotonic() >= end:
                    break
                await asyncio.sleep(0.5)
    finally:
        await nc.close()
    raise ProbewatchError(f"{url}: cannot create the stream {stream} within {wait:.0f} s "
                          f"({last or 'no answer'}); is JetStream enabled (nats-server -js) "
                          "and, for replicas > 1, is the cluster up?")


def _conf_str(s: str) -> str:
    return json.dumps(s)


def write_auth(out_dir: str, hosts: Sequence[str], *, collector: str = "collector",
               admin: str = "admin") -> dict[str, str]:
    """Write auth.conf and the credentials files into ``out_dir`` (mode 0600);
    returns {name: credentials path}."""
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    users: list[str] = []
    files: dict[str, str] = {}
    toks = []
    for h in hosts:
        t = host_token(h)
        if t != h:
            raise ProbewatchError(f"host name {h!r} is not one subject token: use {t!r}")
        toks.append(t)
    if len(set(toks)) != len(toks) or {collector, admin} & set(toks):
        raise ProbewatchError("host names must be unique and differ from "
                              f"{collector!r} and {admin!r}")

    def creds(name: str, host: str | None, inbox: str) -> str:
        pw = secrets.token_urlsafe(24)
        path = os.path.join(out_dir, f"{name}.creds")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"user": name, "password": pw, "host": host, "inbox_prefix": inbox}, f)
        files[name] = path
        return pw

    for t in toks:
        pw = creds(t, t, inbox_prefix(t))
        users.append(
            f"    {{user: {_conf_str(t)}, password: {_conf_str(pw)}, permissions: {{\n"
            f"      publish: {{allow: [{_conf_str(f'{PREFIX}.{t}.>')}]}},\n"
            f"      subscribe: {{allow: [{_conf_str(inbox_prefix(t) + '.>')}]}}\n    }}}}")
    pw = creds(collector, None, inbox_prefix(collector))
    users.append(
        f"    {{user: {_conf_str(collector)}, password: {_conf_str(pw)}, permissions: {{\n"
        f"      publish: {{allow: [\"$JS.API.INFO\", \"$JS.API.STREAM.INFO.{STREAM}\", "
        f"\"$JS.API.CONSUMER.>\", \"$JS.ACK.{STREAM}.>\", \"$JS.API.STREAM.NAMES\"]}},\n"
        f"      subscribe: {{allow: [{_conf_str(inbox_prefix(collector) + '.>')}]}}\n"
        f"    }}}}")
    pw = creds(admin, None, "_INBOX")
    users.append(f"    {{user: {_conf_str(admin)}, password: {_conf_str(pw)}}}")
    conf = os.path.join(out_dir, "auth.conf")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# probewatch fleet: include this file in nats-server's configuration\n"
                "authorization {\n  users: [\n" + ",\n".join(users) + "\n  ]\n}\n")
    files["auth.conf"] = conf
    return files
