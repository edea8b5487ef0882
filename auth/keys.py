"""Stream keys: made with `secrets`, kept only as SHA-256 digests, compared in constant time.

The key is the one secret of the system: it is shown once when made, never stored in clear
and never logged: log lines carry `key_fingerprint`, which tells attempts apart and reveals
nothing of the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 24  # 192 bits -> 32 URL-safe characters
TOKEN_BYTES = 30  # 240 bits -> 40 URL-safe characters
MAX_KEY_CHARS = 256  # longer names are not keys we made; refused without hashing


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def new_token() -> str:
    """An API token: as random as a key, kept the same way (a SHA-256 digest)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def key_digest(key: str) -> bytes:
    """The SHA-256 digest under which a key is stored and looked up."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def digests_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison, so timing never tells how much of a digest matched."""
    return hmac.compare_digest(a, b)


def key_fingerprint(key: str) -> str:
    """What a log line may show of a key: "sha256:" and the first 8 hex digits of its SHA-256
    digest. Enough to tell attempts apart (and to match rtmpd.server's log lines, which use
    the same form); no character of the key itself, and 32 bits of a digest of 192 random
    bits say nothing about it."""
    if not key:
        return "(empty)"
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
