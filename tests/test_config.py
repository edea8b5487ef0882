"""Configuration: defaults, the example file, relative paths, and one clear line per mistake."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest
from rtmpd.web.guard import HTTP_KEEPALIVE_TIMEOUT, HTTP_SEND_TIMEOUT

from rtmpd import config
from rtmpd.config import Config, ConfigError, from_dict, load

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_documented_names() -> None:
    c = Config()
    assert c.rtmp.listen == "0.0.0.0:1935" and c.rtmp.app == "app" and c.rtmp.allow_play == ()
    assert c.http.listen == "0.0.0.0:8080"
    assert (c.http.keepalive_timeout, c.http.send_timeout) == (
        HTTP_KEEPALIVE_TIMEOUT, HTTP_SEND_TIMEOUT
    )  # fmt: skip
    assert (c.hls.fragment, c.hls.playlist_length, c.hls.naming) == (5.0, 30.0, "system")
    assert c.hls.nested is True and c.hls.cleanup is True
    assert c.hls_path == Path.cwd() / "rtmpd-data" / "hls"


def test_example_file_documents_every_key_with_its_default() -> None:
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    example = from_dict(data, ROOT)
    defaults = Config(base_dir=ROOT)
    for section in ("rtmp", "rtmps", "http", "hls", "database", "auth", "web", "webhooks", "log"):
        assert getattr(example, section) == getattr(defaults, section), section
        documented = set(data[section])
        known = set(getattr(defaults, section).__slots__)
        assert documented == known, section


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "rtmpd.toml").write_text('[hls]\npath = "media"\n[database]\npath = "/abs/db"\n')
    c = load(folder / "rtmpd.toml")
    assert c.hls_path == folder / "media"
    assert c.database_path == Path("/abs/db")


def test_rtmpd_toml_in_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(None).rtmp.app == "app"
    (tmp_path / "rtmpd.toml").write_text('[rtmp]\napp = "live"\n')
    assert load(None).rtmp.app == "live"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hls]\nfragmet = 5\n", "unknown key [hls] fragmet"),
        ("[hsl]\n", "unknown section [hsl]"),
        ('[hls]\nfragment = "5"\n', "[hls] fragment: expected a number"),
        ("[hls]\nnested = 1\n", "[hls] nested: expected true or false"),
        ('[rtmp]\nlisten = "1935"\n', "[rtmp] listen"),
        ('[rtmp]\nlisten = "example.org:1935"\n', "not an IP address"),
        ('[http]\nlisten = "0.0.0.0:99999"\n', "out of range"),
        ('[hls]\nnaming = "random"\n', "[hls] naming"),
        ('[auth]\nduplicate = "both"\n', "[auth] duplicate"),
        ("[hls]\nfragment = -1\n", "must not be negative"),
        ("[hls]\nfragment = 0\n", "[hls] fragment"),
        ("[http]\nsend_timeout = 0\n", "[http] send_timeout: must be greater than 0"),
        ('[http]\nsend_timeout = "1m"\n', "[http] send_timeout: expected a number, got '1m'"),
        ('[auth]\non_publish = "ftp://x"\n', "[auth] on_publish"),
        ('[web]\npublic_rtmp_url = "example.org"\n', "[web] public_rtmp_url"),
        ('[http]\ntrusted_proxies = ["proxy"]\n', "[http] trusted_proxies"),
        ('[rtmp]\ntrusted_proxies = ["lb"]\n', "[rtmp] trusted_proxies: 'lb' is not an IP"),
        ("[rtmp]\nproxy_protocol = true\n", "[rtmp] proxy_protocol: needs trusted_proxies"),
        (
            "[http]\nproxy_protocol = true\ntrusted_proxies = []\n",
            "[http] proxy_protocol: needs trusted_proxies",
        ),
        ('[http]\nproxy_protocol = "yes"\n', "[http] proxy_protocol: expected true or false"),
        ('[database]\nurl = "mysql://x"\n', "[database] url: must be a postgresql:// URL"),
        ("[database]\nlease = 1\n", "[database] lease: must be at least 3 seconds"),
        ('[database]\nnode = "a b"\n', "[database] node: 1 to 64 characters"),
        ('[web]\npublic_http_url = "node-a:8080"\n', "[web] public_http_url"),
        ('[webhooks]\nurl = "http://127.0.0.1:9/hook"\n', "[webhooks] secret"),
        ('[webhooks]\nurl = "hook"\nsecret = "s"\n', "[webhooks] url"),
        ("[webhooks]\nmax_pending = 0\n", "[webhooks] max_pending"),
        ("[rtmp\n", "config file"),
        ("[rtmp]\ndrain_grace = -1\n", "[rtmp] drain_grace: must not be negative"),
        ('[rtmp]\ndrain_grace = "10"\n', "[rtmp] drain_grace: expected a number"),
        ('[rtmp]\ndrain_redirect = "live2:1935"\n', "[rtmp] drain_redirect: must be an rtmp://"),
        ('[rtmps]\ncert = "a.pem"\n', "[rtmps] cert, key: set both"),
        ('[rtmps]\nlisten = "1936"\n', "[rtmps] listen"),
        ('[rtmps]\ncertificate = "a.pem"\n', "unknown key [rtmps] certificate"),
        ("[hls]\nmax_speed = 0.5\n", "[hls] max_speed: must be at least 1 (real time)"),
        ("[hls]\nspeed_burst = -1\n", "[hls] speed_burst"),
        ("[hls]\nmax_stream_bytes = 1000\n", "[hls] max_stream_bytes: must be at least"),
        ('[hls]\nmax_total_bytes = "1G"\n', "[hls] max_total_bytes: expected an int"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_rtmps_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    c = from_dict({"rtmps": {"cert": "tls/cert.pem", "key": "/etc/k.pem"}}, tmp_path)
    assert (c.rtmps.enabled, c.rtmps.cert, c.rtmps.key) == (
        True, str(tmp_path / "tls/cert.pem"), "/etc/k.pem",
    )  # fmt: skip
    assert not Config().rtmps.enabled and Config().rtmp.drain_grace == 10.0
    assert Config().pid_file == Config().database_path.parent / "rtmpd.pid"


def test_node_names_and_urls() -> None:
    c = from_dict({"database": {"node": "a"}, "http": {"listen": "127.0.0.1:0"}}, Path("/"))
    assert (c.database.node_name, c.public_http_url(8080)) == ("a", "http://127.0.0.1:8080")
    assert Config().database.node_name == socket.gethostname()
    web = {"public_http_url": "https://a.example.org/"}
    assert from_dict({"web": web}, Path("/")).public_http_url(1) == "https://a.example.org"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("0.0.0.0:1935", "0.0.0.0", 1935),
        ("[::1]:80", "::1", 80),
        (":8080", "0.0.0.0", 8080),
        ("localhost:0", "localhost", 0),
    ],
)
def test_addresses(value: str, host: str, port: int) -> None:
    addr = config.parse_address(value, "k")
    assert (addr.host, addr.port) == (host, port)


def test_publish_url_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """public_rtmp_url, else the listen address unless it is a wildcard, else the host's name;
    never a literal placeholder."""
    c = from_dict({"web": {"public_rtmp_url": "rtmp://live.example/app/"}}, Path("."))
    assert c.publish_url_hint() == "rtmp://live.example/app" and not c.publish_url_guessed
    bound = from_dict({"rtmp": {"listen": "192.0.2.7:1936", "app": "live"}}, Path("."))
    assert bound.publish_url_hint() == "rtmp://192.0.2.7:1936/live" and bound.publish_url_guessed
    v6 = from_dict({"rtmp": {"listen": "[2001:db8::1]:1935"}}, Path("."))
    assert v6.publish_url_hint() == "rtmp://[2001:db8::1]:1935/app"
    monkeypatch.setattr(config.socket, "getfqdn", lambda: "stream.example.org")
    assert Config().publish_url_hint() == "rtmp://stream.example.org:1935/app"
    monkeypatch.setattr(config.socket, "getfqdn", lambda: "localhost")
    monkeypatch.setattr(config.socket, "gethostname", lambda: "studio")
    assert Config().publish_url_hint() == "rtmp://studio:1935/app"
    assert "HOST" not in Config().publish_url_hint()


def test_recording_and_rtmp_play_take_workers() -> None:
    both = {"server": {"workers": 2}, "rtmp": {"allow_play": ["127.0.0.1"]},
            "record": {"enabled": True}}  # fmt: skip
    config = from_dict(both, Path("/"))
    assert config.rtmp.allow_play == ("127.0.0.1",) and config.record.enabled
    assert config.server.worker_count == 2
