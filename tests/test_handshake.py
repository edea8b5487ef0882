"""The handshake state machines: wire sizes, digest vectors, byte-at-a-time input, FFmpeg."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import struct

import pytest

from rtmpd.rtmp.errors import HandshakeError, ProtocolError
from rtmpd.rtmp.handshake import (
    CLIENT_KEY,
    CLIENT_PARTIAL_KEY,
    PACKET_SIZE,
    SCHEME_8,
    SCHEME_772,
    SERVER_KEY,
    SERVER_PARTIAL_KEY,
    ClientHandshake,
    ServerHandshake,
    find_digest,
)
from tests.support.publisher import run_publisher

KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")


def sha(key: bytes, data: bytes | bytearray) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def vector_c1(scheme: int) -> tuple[bytes, int]:
    """A C1 with fixed filler and a digest placed by hand (independent of the module)."""
    packet = bytearray((i * 7 + 3) % 256 for i in range(PACKET_SIZE))
    packet[0:4] = struct.pack(">I", 1234)
    packet[4:8] = bytes((9, 0, 124, 2))
    packet[scheme : scheme + 4] = bytes((200, 201, 202, 203))
    offset = (200 + 201 + 202 + 203) % 728 + scheme + 4
    digest = sha(b"Genuine Adobe Flash Player 001", packet[:offset] + packet[offset + 32 :])
    packet[offset : offset + 32] = digest
    return bytes(packet), offset


def run_pair(client: ClientHandshake, server: ServerHandshake, chunk: int) -> None:
    """Shuttle bytes both ways, `chunk` bytes per call, until both sides are done."""
    for _ in range(20000):
        if client.complete and server.complete:
            return
        out = client.data_to_send()
        for i in range(0, len(out), chunk):
            server.receive_data(out[i : i + chunk])
        back = server.data_to_send()
        for i in range(0, len(back), chunk):
            client.receive_data(back[i : i + chunk])
    raise AssertionError("handshake did not finish")


def test_key_constants() -> None:
    assert CLIENT_KEY == b"Genuine Adobe Flash Player 001" + KEY_TAIL
    assert SERVER_KEY == b"Genuine Adobe Flash Media Server 001" + KEY_TAIL
    assert CLIENT_PARTIAL_KEY == b"Genuine Adobe Flash Player 001"
    assert SERVER_PARTIAL_KEY == b"Genuine Adobe Flash Media Server 001"
    assert len(CLIENT_KEY) == 62 and len(SERVER_KEY) == 68


def test_plain_handshake_vector() -> None:
    c1 = struct.pack(">I", 77) + bytes(4) + bytes(range(256)) * 6
    c1 = c1[:PACKET_SIZE]
    server = ServerHandshake(now_ms=5000)
    server.receive_data(b"\x03" + c1)
    out = server.data_to_send()
    assert len(out) == 1 + 2 * PACKET_SIZE
    assert out[0] == 3
    s1, s2 = out[1 : 1 + PACKET_SIZE], out[1 + PACKET_SIZE :]
    assert struct.unpack(">I", s1[:4])[0] == 5000
    assert s1[4:8] == bytes(4)
    assert s2 == c1
    assert not server.digest
    assert not server.complete
    server.receive_data(s1 + b"\x02\x00\x00")
    assert server.complete
    assert server.take_remainder() == b"\x02\x00\x00"
    assert server.take_remainder() == b""
    server.receive_data(b"more")
    assert server.take_remainder() == b"more"


@pytest.mark.parametrize("scheme", [SCHEME_8, SCHEME_772])
def test_digest_vector_either_scheme(scheme: int) -> None:
    c1, offset = vector_c1(scheme)
    client_digest = c1[offset : offset + 32]
    server = ServerHandshake(now_ms=42)
    server.receive_data(b"\x03" + c1)
    out = server.data_to_send()
    assert server.digest
    s1, s2 = out[1 : 1 + PACKET_SIZE], out[1 + PACKET_SIZE :]
    assert struct.unpack(">I", s1[:4])[0] == 42
    assert s1[4:8] != bytes(4)
    # S1: a server digest, placed by the same scheme the client used, over S1 minus itself.
    s1_offset = sum(s1[scheme : scheme + 4]) % 728 + scheme + 4
    expected = sha(b"Genuine Adobe Flash Media Server 001", s1[:s1_offset] + s1[s1_offset + 32 :])
    assert s1[s1_offset : s1_offset + 32] == expected
    # S2: signed at its end with HMAC(full server key, client digest).
    assert s2[-32:] == sha(sha(SERVER_KEY, client_digest), s2[:-32])
    assert s2 != c1


def test_c1_with_bad_digest_gets_plain_answer() -> None:
    c1, offset = vector_c1(SCHEME_8)
    broken = bytearray(c1)
    broken[offset] ^= 0xFF
    server = ServerHandshake()
    server.receive_data(b"\x03" + bytes(broken))
    out = server.data_to_send()
    assert not server.digest
    assert out[1 + PACKET_SIZE :] == bytes(broken)


def test_find_digest_rejects_wrong_key() -> None:
    c1, offset = vector_c1(SCHEME_772)
    assert find_digest(c1, CLIENT_PARTIAL_KEY) == (SCHEME_772, offset)
    assert find_digest(c1, SERVER_PARTIAL_KEY) is None


@pytest.mark.parametrize("digest", [False, True])
def test_round_trip_byte_at_a_time(digest: bool) -> None:
    client = ClientHandshake(now_ms=10, digest=digest)
    server = ServerHandshake(now_ms=20)
    run_pair(client, server, chunk=1)
    assert server.digest is digest
    assert client.take_remainder() == b"" and server.take_remainder() == b""


@pytest.mark.parametrize("chunk", [1, 7, 1000, 10000])
def test_remainder_survives_any_split(chunk: int) -> None:
    client = ClientHandshake(digest=True)
    server = ServerHandshake()
    wire = client.data_to_send()
    server.receive_data(wire)
    client.receive_data(server.data_to_send())
    tail = b"\x03" + bytes(range(40))
    wire = client.data_to_send() + tail
    for i in range(0, len(wire), chunk):
        server.receive_data(wire[i : i + chunk])
    assert server.complete
    assert server.take_remainder() == tail


def test_client_sends_c0_c1_at_once_and_c2_after_s1() -> None:
    client = ClientHandshake(now_ms=99, digest=True)
    first = client.data_to_send()
    assert len(first) == 1 + PACKET_SIZE and first[0] == 3
    assert struct.unpack(">I", first[1:5])[0] == 99
    assert find_digest(first[1:], CLIENT_PARTIAL_KEY) is not None
    assert client.data_to_send() == b""
    server = ServerHandshake()
    server.receive_data(first)
    answer = server.data_to_send()
    client.receive_data(answer[: 1 + PACKET_SIZE])
    c2 = client.data_to_send()
    assert len(c2) == PACKET_SIZE and not client.complete
    client.receive_data(answer[1 + PACKET_SIZE :] + b"xy")
    assert client.complete and client.take_remainder() == b"xy"


def test_digest_client_checks_s1() -> None:
    client = ClientHandshake(digest=True)
    client.data_to_send()
    with pytest.raises(HandshakeError, match="S1"):
        client.receive_data(b"\x03" + bytes(PACKET_SIZE))


def test_digest_client_checks_s2() -> None:
    client = ClientHandshake(digest=True)
    server = ServerHandshake()
    server.receive_data(client.data_to_send())
    answer = bytearray(server.data_to_send())
    answer[-1] ^= 1
    with pytest.raises(HandshakeError, match="S2"):
        client.receive_data(bytes(answer))


@pytest.mark.parametrize("version", [0, 6, 0x16, 0x47])  # 0x47: "G" of an HTTP GET
def test_wrong_version_fails_on_first_byte(version: int) -> None:
    server = ServerHandshake()
    with pytest.raises(HandshakeError) as info:
        server.receive_data(bytes((version,)))
    assert isinstance(info.value, ProtocolError)
    client = ClientHandshake()
    with pytest.raises(HandshakeError):
        client.receive_data(bytes((version,)) + bytes(PACKET_SIZE))


async def test_ffmpeg_completes_digest_handshake() -> None:
    """FFmpeg's RTMP client (PyAV, in a child process) against a socket driven only by
    ServerHandshake."""
    done: asyncio.Future[tuple[bool, bytes]] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hs = ServerHandshake(now_ms=0)
        try:
            while not hs.complete:
                data = await reader.read(4096)
                if not data:
                    break
                hs.receive_data(data)
                writer.write(hs.data_to_send())
            rest = hs.take_remainder()
            while len(rest) < 32:
                data = await reader.read(4096)
                if not data:
                    break
                rest += data
            if not done.done():
                done.set_result((hs.digest, rest))
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pushing = asyncio.create_task(
        run_publisher(f"rtmp://127.0.0.1:{port}/app/x", seconds=0.2, video=False)
    )
    try:
        digest, rest = await asyncio.wait_for(done, 30)
        result = await pushing
    finally:
        server.close()
        await server.wait_closed()
    # We hang up right after the handshake, so FFmpeg's open fails.
    assert result.returncode != 0
    assert digest, "FFmpeg sends a digest C1: the server must have found it"
    # The chunk stream starts: a type-0 chunk header, then FFmpeg's AMF0 "connect" command.
    assert rest[0] >> 6 == 0
    assert rest[7] == 20  # AMF0 command message
    assert rest[12:22] == b"\x02\x00\x07connect"
