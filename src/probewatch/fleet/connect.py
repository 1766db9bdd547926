"""How probewatch connects to NATS: credentials, TLS, and defaults changed for a fleet.

nats-py's defaults suit a short-lived client, not an agent that must ride out a
server restart: it gives up after 60 reconnect attempts, notices a dead server only
after two missed pings at 120 s each, and buffers up to 2 MB of publishes while
disconnected (the exporter keeps its own bounded buffer and disk spill instead).
:func:`connect_kwargs` changes those: reconnect forever every 0.5 s, ping every 5 s,
a 512 KiB reconnect buffer (room for two 256 KB batches), a 2 s connect timeout.

Credentials (``--creds FILE``): a NATS ``.creds`` file (a user JWT and NKey seed,
operator mode), or the probewatch credentials file ``probewatch fleet init`` writes
(JSON: ``user``, ``password``, ``host`` and the per-host ``inbox_prefix`` that the
server lets this user subscribe to; replies to its publishes arrive there).

Example::

    kw = connect_kwargs("tls://nats.example:4222", creds="web1.creds",
                        tls=TlsFiles(ca="ca.pem", cert="web1.pem", key="web1.key"))
    nc = await nats.connect(**kw)
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ProbewatchError

__all__ = ["TlsFiles", "Creds", "read_creds", "connect_kwargs", "check_url"]


@dataclass
class TlsFiles:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as e:
                raise ProbewatchError(f"--tls-cert {self.cert}: cannot load the client "
                                      f"certificate ({e})") from None
        return ctx


@dataclass
class Creds:
    user: str | None = None
    password: str | None = None
    host: str | None = None
    inbox_prefix: str | None = None
    nats_creds: str | None = None  # a NATS .creds file


def read_creds(path: str) -> Creds:
    """Read ``--creds FILE`` (see the module docs)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError as e:
        raise ProbewatchError(f"--creds {path}: {e.strerror}") from None
    if b"BEGIN NATS USER JWT" in data:
        return Creds(nats_creds=path)
    try:
        d = json.loads(data)
        if not isinstance(d, dict):
            raise ValueError
        return Creds(user=str(d["user"]), password=str(d["password"]),
                     host=d.get("host"), inbox_prefix=d.get("inbox_prefix"))
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ProbewatchError(f"--creds {path}: neither a NATS .creds file nor a "
                              "probewatch credentials file (probewatch fleet init writes "
                              "one per host)") from None


def check_url(url: str) -> list[str]:
    """``nats://H:P[,nats://H2:P2...]`` -> the server list; ProbewatchError if bad."""
    out = []
    for u in url.split(","):
        u = u.strip()
        parts = urlsplit(u)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ProbewatchError(f"{u!r} is not a NATS server URL (nats://HOST:PORT or "
                                  "tls://HOST:PORT; several separated by commas)")
        out.append(u)
    return out


def connect_kwargs(url: str, *, creds: str | Creds | None = None,
                   tls: TlsFiles | None = None, inbox_prefix: str | None = None,
                   name: str = "probewatch", **over: Any) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` (see the module docs)."""
    servers = check_url(url)
    kw: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
        "pending_size": 512 * 1024,
        "connect_timeout": 2,
    }
    c = read_creds(creds) if isinstance(creds, str) else creds
    if c is not None:
        if c.nats_creds:
            kw["user_credentials"] = c.nats_creds
        else:
            kw["user"], kw["password"] = c.user, c.password
        inbox_prefix = inbox_prefix or c.inbox_prefix
    if inbox_prefix:
        kw["inbox_prefix"] = inbox_prefix
    if tls is not None and (tls.ca or tls.cert):
        kw["tls"] = tls.context()
        host = urlsplit(servers[0]).hostname
        if host:
            kw["tls_hostname"] = host
    elif any(s.startswith("tls://") for s in servers):
        kw["tls"] = TlsFiles().context()
    kw.update(over)
    return kw


async def quiet(*_a: Any) -> None:
    """A callback that ignores what nats-py reports (errors are counted elsewhere)."""
    return None
