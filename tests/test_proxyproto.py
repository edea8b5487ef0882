"""PROXY protocol v1 and v2: the parser on its own, then the RTMP and HTTP listeners of a whole
rtmpd taking headers from a trusted proxy (the streamer's address in the failed-key limit, the
per-address caps and the logs) and refusing them from anyone else. The same against a real
HAProxy is in test_haproxy.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmpd.app import Rtmpd
from rtmpd.proxyproto import (
    V1_PREFIX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyReader,
    TrustedNetworks,
    v1_line,
    v2_header,
)
from tests.support.app import publish_attempt as attempt
from tests.support.app import start_server
from tests.support.hostile import lines
from tests.support.pieces import FEEDS, pieces

#: The loopback address rtmpd trusts as its load balancer in these tests; clients that
#: connect directly use other 127.x addresses.
PROXY = "127.0.0.1"
DIRECT = "127.0.0.2"


def read_all(reader: ProxyReader, data: bytes, mode: str) -> tuple[ProxyHeader | None, bytes]:
    result = None
    chunks = list(pieces(data, mode))
    rest = b""
    for i, chunk in enumerate(chunks):
        result = reader.feed(chunk)
        if result is not None:
            rest = result[1] + b"".join(chunks[i + 1 :])
            return result[0], rest
    raise AssertionError("no header read")


@pytest.mark.parametrize("mode", FEEDS)
@pytest.mark.parametrize(
    ("header", "source"),
    [
        (v1_line(("203.0.113.7", 51000), ("10.0.0.1", 1935)), ("203.0.113.7", 51000)),
        (v1_line(("2001:db8::7", 443), ("2001:db8::1", 1935)), ("2001:db8::7", 443)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
        (v2_header(("198.51.100.9", 40000), ("10.0.0.1", 8080)), ("198.51.100.9", 40000)),
        (v2_header(("2001:db8:1::9", 1), ("2001:db8::1", 8080)), ("2001:db8:1::9", 1)),
        (v2_header(("::ffff:192.0.2.5", 7), ("::1", 8080)), ("192.0.2.5", 7)),
        (v2_header(None), None),  # LOCAL: a health check, the peer's own address
    ],
)
def test_headers_name_the_client(mode: str, header: bytes, source: tuple[str, int] | None) -> None:
    got, rest = read_all(ProxyReader(required=True), header + b"\x03rest of it", mode)
    assert got is not None and got.source == source
    assert got.version == (2 if header.startswith(V2_SIGNATURE) else 1)
    assert rest == b"\x03rest of it"


def test_v2_tlvs_are_skipped_by_length() -> None:
    header = bytearray(v2_header(("192.0.2.1", 5)))
    tlv = b"\x04\x00\x03abc"  # a NOOP TLV
    header[14:16] = (int.from_bytes(header[14:16], "big") + len(tlv)).to_bytes(2, "big")
    got, rest = read_all(ProxyReader(required=True), bytes(header) + tlv + b"GET", "whole")
    assert got == ProxyHeader(2, ("192.0.2.1", 5)) and rest == b"GET"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "no PROXY protocol header"),
        (b"\x03" + bytes(1536), "no PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
        (b"PROXY TCP4 " + b"9" * 120, "too long"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP4|TCP6"),
        (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "no TCP4 addresses"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "TCP4|TCP6"),
        (b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n", "ASCII"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version 3"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command"),
        (V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "family 0x12"),
        (V2_SIGNATURE + b"\x21\x31\x00\x0c" + bytes(12), "family 0x31"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "too short"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "at most"),
    ],
)
def test_bad_or_missing_headers_are_refused(data: bytes, why: str) -> None:
    reader = ProxyReader(required=True)
    with pytest.raises(ProxyHeaderError, match=why):
        for chunk in pieces(data, "whole"):
            reader.feed(chunk)


@pytest.mark.parametrize("mode", FEEDS)
def test_an_untrusted_peer_is_served_untouched_unless_it_sends_a_header(mode: str) -> None:
    data = b"GET /api/streams HTTP/1.1\r\n\r\n"
    assert read_all(ProxyReader(required=False), data, mode) == (None, data)
    handshake = b"\x03" + bytes(64)
    assert read_all(ProxyReader(required=False), handshake, mode) == (None, handshake)
    for header in (v1_line(("1.2.3.4", 1), ("5.6.7.8", 2)), v2_header(("1.2.3.4", 1))):
        reader = ProxyReader(required=False)
        with pytest.raises(ProxyHeaderError, match="not in trusted_proxies"):
            for chunk in pieces(header, mode):
                reader.feed(chunk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.sampled_from([b"", V1_PREFIX, V2_SIGNATURE]))
def test_any_bytes_are_a_header_more_wanted_or_one_clear_error(
    data: bytes, required: bool, start: bytes
) -> None:
    reader = ProxyReader(required=required)
    try:
        result = reader.feed(start + data)
    except ProxyHeaderError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    if result is not None:
        header, rest = result
        assert len(rest) <= len(start + data)
        if header is not None and header.source is not None:
            assert 0 <= header.source[1] <= 65535


def test_trusted_networks() -> None:
    nets = TrustedNetworks.parse(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"])
    assert nets.trusts("10.9.8.7") and nets.trusts("127.0.0.1") and nets.trusts("2001:db8::5")
    assert nets.trusts("::ffff:10.1.1.1")
    assert not nets.trusts("127.0.0.2") and not nets.trusts("?") and not nets.trusts("")
    with pytest.raises(ValueError, match="'lb' is not an IP"):
        TrustedNetworks.parse(["lb"])


# -- a whole rtmpd behind a (hand-written) proxy ------------------------------------------------


def header_for(client: str, port: int = 40000) -> bytes:
    return v2_header((client, port), ("127.0.0.1", 1935))


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Rtmpd]:
    server = await start_server(
        tmp_path,
        rtmp={"proxy_protocol": True, "trusted_proxies": [PROXY], "max_connections_per_ip": 2},
        http={"proxy_protocol": True, "trusted_proxies": [PROXY], "max_connections_per_ip": 1},
        auth={"max_failures": 3, "failure_window": 60.0, "backoff": 60.0},
    )
    yield server
    await server.stop()


async def test_the_failed_key_limit_counts_the_streamer_behind_the_proxy(
    proxied: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = proxied.rtmp.port
    assert proxied.auth.store is not None
    key = await proxied.auth.store.add_user("benw")
    answers = [await attempt(port, "wrong", PROXY, header_for("203.0.113.7")) for _ in range(4)]
    assert [a.description if a else None for a in answers] == (
        ["unknown stream key"] * 3 + ["too many failed attempts"]
    )
    # Another streamer behind the same proxy is not blocked: the limit is per streamer.
    other = await attempt(port, key, PROXY, header_for("198.51.100.20"))
    assert other is not None and other.code == "NetStream.Publish.Start"
    text = "\n".join(lines(caplog, logging.INFO))
    assert "publish from 203.0.113.7 refused" in text and "203.0.113.7 blocked for 60 s" in text
    assert "conn 5 198.51.100.20:40000 via 127.0.0.1: publishing" in text
    assert "publish from 198.51.100.20 accepted under benw" in text


async def test_per_address_caps_count_the_streamer_behind_the_proxy(
    proxied: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    port = proxied.rtmp.port
    held = []
    for client in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(PROXY, 0))
        writer.write(header_for(client))
        held.append(writer)
    await asyncio.sleep(0.2)
    assert proxied.rtmp.connections == 3
    refused = await attempt(port, "k", PROXY, header_for("192.0.2.1"))
    assert refused is None and proxied.rtmp.connections == 3
    assert any("refused: 2 connections already open from 192.0.2.1" in x for x in lines(caplog))
    for writer in held:
        writer.close()


async def test_headers_from_anyone_else_and_none_from_the_proxy_are_refused(
    proxied: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    port = proxied.rtmp.port
    assert await attempt(port, "k", DIRECT, header_for("192.0.2.1")) is None
    assert await attempt(port, "k", PROXY) is None
    # A streamer connecting directly (not through the proxy) is served as it is.
    direct = await attempt(port, "wrong", DIRECT)
    assert direct is not None and direct.description == "unknown stream key"
    text = "\n".join(lines(caplog))
    assert (
        f"{DIRECT}" in text and "a PROXY protocol header from a peer not in trusted_proxies" in text
    )
    assert "refused: no PROXY protocol header from a trusted proxy" in text
    assert "Traceback" not in caplog.text


async def http_exchange(port: int, source: str, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(data)
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_http_through_the_proxy_sees_the_viewer(
    proxied: Rtmpd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = proxied.http_port
    get = b"GET /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    v1 = v1_line(("192.0.2.44", 5555), ("127.0.0.1", port))
    answer = await http_exchange(port, PROXY, v1 + get)
    assert answer.startswith(b"HTTP/1.1 200")
    access = [r.getMessage() for r in caplog.records if r.name == "rtmpd.access"]
    assert any(line.startswith("192.0.2.44 - - ") for line in access), access
    assert await http_exchange(port, DIRECT, get) != b""  # direct clients are served
    assert any(line.startswith(f"{DIRECT} - - ") for line in access + [
        r.getMessage() for r in caplog.records if r.name == "rtmpd.access"])  # fmt: skip
    assert await http_exchange(port, DIRECT, v1 + get) == b""  # claims a client: refused
    assert await http_exchange(port, PROXY, get) == b""  # the proxy without a header
    refusals = [r.getMessage() for r in caplog.records if "PROXY" in r.getMessage()]
    assert any(f"from {DIRECT} refused" in line for line in refusals), refusals
    metrics = proxied.metrics.render().decode()
    assert 'rtmpd_http_connections_dropped_total{reason="proxy_protocol"} 2.0' in metrics


async def test_http_per_address_cap_counts_the_viewer_behind_the_proxy(proxied: Rtmpd) -> None:
    port = proxied.http_port
    _, first = await asyncio.open_connection("127.0.0.1", port, local_addr=(PROXY, 0))
    first.write(v2_header(("192.0.2.50", 1)))
    await asyncio.sleep(0.1)
    get = b"GET /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    same = await http_exchange(port, PROXY, v2_header(("192.0.2.50", 2)) + get)
    other = await http_exchange(port, PROXY, v2_header(("192.0.2.51", 3)) + get)
    assert same.startswith(b"HTTP/1.1 503") and other.startswith(b"HTTP/1.1 200")
    first.close()
