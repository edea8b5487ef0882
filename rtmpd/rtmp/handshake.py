"""The RTMP handshake, sans-I/O: bytes in, bytes out, no sockets and no clock.

Two flavours share the same wire sizes (C0/S0 one version byte, C1/S1/C2/S2 1536 bytes):

* plain: C1/S1 are time + four zero bytes + random; S2 echoes C1 and C2 echoes S1.
* digest (Flash Player 9): C1 carries an HMAC-SHA256 digest at a position derived from four
  of its own bytes (two schemes, see `_digest_offset`). A server that finds it answers with an
  S1 holding its own digest and an S2 signed with a key derived from the client's digest.
  FFmpeg and OBS send this form; some players refuse a server that does not answer in kind.

Both sides accept their input split at any byte boundary.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from rtmpd.rtmp.errors import HandshakeError

RTMP_VERSION = 3
PACKET_SIZE = 1536
DIGEST_SIZE = 32

_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
#: The full keys sign S2/C2; their text prefixes alone sign the digests inside C1/S1.
CLIENT_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
SERVER_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
CLIENT_PARTIAL_KEY = CLIENT_KEY[:30]
SERVER_PARTIAL_KEY = SERVER_KEY[:36]

#: Version fields written into bytes 4..7 of a digest C1/S1; any non-zero value marks the form.
_SERVER_VERSION = bytes((0x0D, 0x0E, 0x0A, 0x0D))
_CLIENT_VERSION = bytes((0x0C, 0x00, 0x0D, 0x0E))

#: Digest schemes, named by where the four offset bytes sit inside the packet.
SCHEME_8 = 8
SCHEME_772 = 772


def _digest_offset(packet: bytes | bytearray, scheme: int) -> int:
    """Where the 32-byte digest sits: four bytes at `scheme`, summed modulo 728, past them."""
    return sum(packet[scheme : scheme + 4]) % 728 + scheme + 4


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    """HMAC of the packet with the digest's own 32 bytes left out."""
    return _hmac(key, packet[:offset] + packet[offset + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, int] | None:
    """(scheme, offset) of a valid digest in a C1/S1 signed with `key`, or None."""
    for scheme in (SCHEME_772, SCHEME_8):
        offset = _digest_offset(packet, scheme)
        expected = _packet_digest(packet, offset, key)
        if hmac.compare_digest(expected, packet[offset : offset + DIGEST_SIZE]):
            return scheme, offset
    return None


def make_digest_packet(now_ms: int, version: bytes, key: bytes, scheme: int) -> bytes:
    """A C1/S1 with a valid digest: time, version, random filler, digest in place."""
    packet = bytearray(struct.pack(">I", now_ms & 0xFFFFFFFF) + version)
    packet += os.urandom(PACKET_SIZE - 8)
    offset = _digest_offset(packet, scheme)
    packet[offset : offset + DIGEST_SIZE] = _packet_digest(bytes(packet), offset, key)
    return bytes(packet)


def make_response(peer_digest: bytes, full_key: bytes) -> bytes:
    """An S2/C2 answering a digest packet: random, signed at the end with a derived key."""
    body = os.urandom(PACKET_SIZE - DIGEST_SIZE)
    return body + _hmac(_hmac(full_key, peer_digest), body)


def response_valid(packet: bytes, my_digest: bytes, full_key: bytes) -> bool:
    """Whether an S2/C2 is signed with the key derived from the digest we sent."""
    body = packet[: PACKET_SIZE - DIGEST_SIZE]
    expected = _hmac(_hmac(full_key, my_digest), body)
    return hmac.compare_digest(expected, packet[PACKET_SIZE - DIGEST_SIZE :])


def _plain_packet(now_ms: int) -> bytes:
    return struct.pack(">I", now_ms & 0xFFFFFFFF) + bytes(4) + os.urandom(PACKET_SIZE - 8)


def _check_version(byte: int, who: str) -> None:
    if byte != RTMP_VERSION:
        raise HandshakeError(f"unsupported RTMP version {byte} in {who}")


class _Handshake:
    """What both sides share: wait for the peer's version byte and first packet, answer it,
    wait for its second packet, then hand every later byte to the chunk stream."""

    __slots__ = ("_buf", "_out", "_stage", "_remainder")
    _peer = ("S0", "S1")  # names of the peer's packets, for error messages

    def __init__(self, first_output: bytes = b"") -> None:
        self._buf = bytearray()
        self._out = bytearray(first_output)
        self._stage = 0  # 0: want version + first packet, 1: want second packet, 2: complete
        self._remainder = bytearray()

    @property
    def complete(self) -> bool:
        return self._stage == 2

    def receive_data(self, data: bytes) -> None:
        if self._stage == 2:
            self._remainder += data
            return
        self._buf += data
        if self._stage == 0:
            if self._buf:
                _check_version(self._buf[0], self._peer[0])
            if len(self._buf) < 1 + PACKET_SIZE:
                return
            first = bytes(self._buf[1 : 1 + PACKET_SIZE])
            del self._buf[: 1 + PACKET_SIZE]
            self._out += self._on_first(first)
            self._stage = 1
        if self._stage == 1 and len(self._buf) >= PACKET_SIZE:
            self._on_second(bytes(self._buf[:PACKET_SIZE]))
            self._remainder += self._buf[PACKET_SIZE:]
            self._buf = bytearray()
            self._stage = 2

    def _on_first(self, packet: bytes) -> bytes:
        """The answer to the peer's first packet (C1 or S1)."""
        raise NotImplementedError

    def _on_second(self, packet: bytes) -> None:
        """Check the peer's second packet (C2 or S2); raise HandshakeError to refuse it."""

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def take_remainder(self) -> bytes:
        rest = bytes(self._remainder)
        self._remainder.clear()
        return rest


class ServerHandshake(_Handshake):
    """Server side: read C0+C1, answer S0+S1+S2 at once, then wait for C2 (length only)."""

    __slots__ = ("_now_ms", "digest")
    _peer = ("C0", "C1")

    def __init__(self, *, now_ms: int = 0) -> None:
        super().__init__()
        self._now_ms = now_ms
        #: Whether the client used the digest form (known once C1 is in).
        self.digest = False

    def _on_first(self, packet: bytes) -> bytes:
        return bytes((RTMP_VERSION,)) + self._answer(packet)

    def _answer(self, c1: bytes) -> bytes:
        """S1+S2 for this C1: digest form when C1 carries a valid client digest."""
        found = find_digest(c1, CLIENT_PARTIAL_KEY) if any(c1[4:8]) else None
        if found is None:
            return _plain_packet(self._now_ms) + c1
        self.digest = True
        scheme, offset = found
        s1 = make_digest_packet(self._now_ms, _SERVER_VERSION, SERVER_PARTIAL_KEY, scheme)
        client_digest = c1[offset : offset + DIGEST_SIZE]
        return s1 + make_response(client_digest, SERVER_KEY)


class ClientHandshake(_Handshake):
    """Client side: C0+C1 up front, C2 once S1 is in, complete once S2 is in.

    With `digest=True`, C1 carries a client digest and the server must answer in the digest
    form: S1's digest must verify, and S2 must be either signed from our digest or (lenient
    servers) an echo of C1.
    """

    __slots__ = ("_want_digest", "_c1", "_c1_digest")

    def __init__(self, *, now_ms: int = 0, digest: bool = False) -> None:
        self._want_digest = digest
        if digest:
            self._c1 = make_digest_packet(now_ms, _CLIENT_VERSION, CLIENT_PARTIAL_KEY, SCHEME_8)
            offset = _digest_offset(self._c1, SCHEME_8)
            self._c1_digest = self._c1[offset : offset + DIGEST_SIZE]
        else:
            self._c1 = _plain_packet(now_ms)
            self._c1_digest = b""
        super().__init__(bytes((RTMP_VERSION,)) + self._c1)

    def _on_first(self, packet: bytes) -> bytes:
        return self._c2(packet)

    def _on_second(self, packet: bytes) -> None:
        if (
            self._want_digest
            and packet != self._c1
            and not response_valid(packet, self._c1_digest, SERVER_KEY)
        ):
            raise HandshakeError("S2 is neither signed from our digest nor an echo of C1")

    def _c2(self, s1: bytes) -> bytes:
        if not self._want_digest:
            return s1
        found = find_digest(s1, SERVER_PARTIAL_KEY)
        if found is None:
            raise HandshakeError("S1 carries no valid server digest")
        _, offset = found
        return make_response(s1[offset : offset + DIGEST_SIZE], CLIENT_KEY)
