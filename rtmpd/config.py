"""Configuration: TOML in, one frozen tree of dataclasses out, with every default in code.

The file is `-c FILE`, else `./rtmpd.toml` when present, else the built-in defaults. Relative
paths resolve against the config file's folder (the working directory without a file). A bad
file stops start-up with one line naming the key: operators fix what the message names.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FILE = "rtmpd.toml"
DEFAULT_DATA = "rtmpd-data"
DEFAULT_HLSJS_URL = "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key or the cause."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RtmpSection:
    listen: str = "0.0.0.0:1935"
    app: str = "app"
    allow_play: bool = False
    max_connections: int = 1000
    max_connections_per_ip: int = 50


@dataclass(frozen=True, slots=True)
class HttpSection:
    listen: str = "0.0.0.0:8080"
    access_log: bool = True
    keepalive_timeout: float = 15.0
    max_connections: int = 4096
    max_connections_per_ip: int = 256


@dataclass(frozen=True, slots=True)
class HlsSection:
    path: str = f"{DEFAULT_DATA}/hls"
    fragment: float = 5.0
    playlist_length: float = 30.0
    naming: str = "system"
    nested: bool = True
    cleanup: bool = True
    endlist: bool = True
    max_fragment: float = 0.0  # 0: ten fragments, as nginx-rtmp
    max_segment_bytes: int = 64 * 1024 * 1024
    grace: float = 0.0  # 0: two playlist lengths


@dataclass(frozen=True, slots=True)
class DatabaseSection:
    path: str = f"{DEFAULT_DATA}/rtmpd.sqlite3"


@dataclass(frozen=True, slots=True)
class AuthSection:
    duplicate: str = "takeover"
    on_publish: str = ""
    on_publish_done: str = ""
    callback_timeout: float = 10.0
    max_failures: int = 5
    failure_window: float = 60.0
    backoff: float = 60.0


@dataclass(frozen=True, slots=True)
class WebSection:
    hlsjs_url: str = DEFAULT_HLSJS_URL
    hlsjs_file: str = ""  # a local hls.min.js to serve instead of hlsjs_url (self-hosting)
    # Shown to streamers by `rtmpd users add`; derived from [rtmp] when empty.
    public_rtmp_url: str = ""


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    rtmp: RtmpSection = field(default_factory=RtmpSection)
    http: HttpSection = field(default_factory=HttpSection)
    hls: HlsSection = field(default_factory=HlsSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    auth: AuthSection = field(default_factory=AuthSection)
    web: WebSection = field(default_factory=WebSection)
    log: LogSection = field(default_factory=LogSection)
    base_dir: Path = field(default_factory=Path.cwd)
    source: Path | None = None

    @property
    def rtmp_address(self) -> Address:
        return parse_address(self.rtmp.listen, "[rtmp] listen")

    @property
    def http_address(self) -> Address:
        return parse_address(self.http.listen, "[http] listen")

    @property
    def hls_path(self) -> Path:
        return self.resolve(self.hls.path)

    @property
    def database_path(self) -> Path:
        return self.resolve(self.database.path)

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def publish_url_hint(self) -> str:
        if self.web.public_rtmp_url:
            return self.web.public_rtmp_url.rstrip("/")
        addr = self.rtmp_address
        host = "HOST" if addr.host in ("0.0.0.0", "::") else addr.host
        return f"rtmp://{host}:{addr.port}/{self.rtmp.app}"


_SECTIONS: dict[str, type[Any]] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Config)
    if f.name not in ("base_dir", "source")
}

_CHOICES = {
    ("hls", "naming"): ("system", "sequential", "timestamp"),
    ("auth", "duplicate"): ("takeover", "reject"),
    ("log", "level"): ("debug", "info", "warning", "error"),
}


def parse_address(value: str, key: str) -> Address:
    """'host:port' or '[v6]:port'; port 0 asks the OS for a free one (tests use it)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{key}: {value!r} is not HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"{key}: port {port} is out of range")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host in ("", "*"):
        host = "0.0.0.0"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    return Address(host, port)


def _check_value(section: str, key: str, value: Any, default: Any) -> Any:
    name = f"[{section}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{name}: must not be negative")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        value = float(value)
        if value < 0:
            raise ConfigError(f"{name}: must not be negative")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    choices = _CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def from_dict(data: dict[str, Any], base_dir: Path, source: Path | None = None) -> Config:
    sections: dict[str, Any] = {}
    for section, values in data.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        checked = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown key [{section}] {key}")
            checked[key] = _check_value(section, key, value, getattr(defaults, key))
        sections[section] = cls(**checked)
    config = Config(**sections, base_dir=base_dir, source=source)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    config.rtmp_address  # noqa: B018 - parse to validate
    config.http_address  # noqa: B018
    if not config.rtmp.app or "/" in config.rtmp.app:
        raise ConfigError("[rtmp] app: must be a non-empty name without '/'")
    if config.http.keepalive_timeout <= 0:
        raise ConfigError("[http] keepalive_timeout: must be greater than 0")
    if config.hls.fragment <= 0:
        raise ConfigError("[hls] fragment: must be greater than 0")
    if config.hls.playlist_length < config.hls.fragment:
        raise ConfigError("[hls] playlist_length: must be at least one fragment")
    if config.hls.max_fragment and config.hls.max_fragment < config.hls.fragment:
        raise ConfigError("[hls] max_fragment: must be at least [hls] fragment")
    for key in ("on_publish", "on_publish_done"):
        url = getattr(config.auth, key)
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"[auth] {key}: {url!r} is not an http:// or https:// URL")


def load(path: Path | None) -> Config:
    """Load `path`, else ./rtmpd.toml when present, else the defaults."""
    if path is None:
        candidate = Path.cwd() / DEFAULT_FILE
        if not candidate.is_file():
            return from_dict({}, Path.cwd())
        path = candidate
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return from_dict(data, path.resolve().parent, path)
