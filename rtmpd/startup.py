"""What can stop rtmpd from starting, said in one line the operator can act on: the error,
why a port cannot be bound, the RTMPS certificate that does not load, and the open-file
limit the connection caps need.

Apart from rtmpd.app because the supervisor binds ports too and says the same, and because
none of it is wiring.
"""

from __future__ import annotations

import errno
import logging
import resource
import ssl

from .config import RtmpsSection

log = logging.getLogger("rtmpd")


class StartupError(Exception):
    """Start-up failed for a reason the operator can fix (named in the message)."""


def tls_context(cfg: RtmpsSection) -> ssl.SSLContext:
    """The RTMPS server context from [rtmps] cert and key (at start, and again on SIGHUP)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cfg.cert, cfg.key)
    except (OSError, ssl.SSLError) as exc:  # missing file, bad PEM, key not the cert's
        reason = exc.strerror if not isinstance(exc, ssl.SSLError) else exc.reason or exc
        raise StartupError(f"[rtmps] cert/key {cfg.cert}, {cfg.key}: {reason}") from None
    return context


def raise_file_limit(needed: int) -> None:
    """Let the connection caps, not the open-file limit, be what bounds connections: at the
    limit, accept() fails on every port and no segment file can be opened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.debug("cannot raise the open file limit: %s", exc)
            target = soft
    if target < needed:
        log.warning(
            "the open file limit (%d) is below what the connection caps need (%d); "
            "raise it (ulimit -n, systemd LimitNOFILE=) or lower [rtmp] max_connections",
            target,
            needed,
        )


def listen_error(exc: OSError) -> str:
    """Why a port could not be bound, in the words an operator acts on."""
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)
