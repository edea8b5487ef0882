"""Configuration: one TOML file, each section loaded straight into the object of the layer that
owns it and checked once, there (msgspec does the typed, strict loading).

The file is `-c FILE`, else `./rtmpd.toml` when present, else the built-in defaults. Relative
paths resolve against the config file's folder (the working directory without a file). A bad
file stops start-up with one line naming the key: operators fix what the message names.

- [server], [rtmp], [rtmps], [http], [log]: `ServerSection`, `RtmpSection`, `RtmpsSection`,
  `HttpSection`, `LogSection` here (the processes, the listeners and the log, which the
  composition root and the supervisor open);
- [hls]: `rtmpd.hls.HlsConfig` (the packager);
- [record]: `rtmpd.hls.recording.RecordConfig` (broadcasts kept as VODs);
- [auth], [database]: `rtmpd.auth.AuthConfig`, `rtmpd.auth.DatabaseConfig` (publish decisions);
- [web]: `rtmpd.web.WebConfig` (the pages);
- [webhooks]: `rtmpd.webhooks.WebhooksConfig` (the signed POSTs about streams and users).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from rtmpd.auth import destinations
from rtmpd.auth.config import AuthConfig, DatabaseConfig
from rtmpd.hls.config import HlsConfig
from rtmpd.hls.recording import RecordConfig
from rtmpd.proxyproto import ProxyPolicy, TrustedNetworks
from rtmpd.web.config import WebConfig
from rtmpd.webhooks import WebhooksConfig

DEFAULT_FILE = "rtmpd.toml"

Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key or the cause."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


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


class Balance(StrEnum):
    """How worker processes share the public ports (`[server] balance`)."""

    SHARED = "shared"  # one listening socket all workers accept from: the first free one wins
    REUSEPORT = "reuseport"  # one SO_REUSEPORT socket per worker: the kernel hashes to one


class ServerSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Processes: `workers` rtmpd worker processes behind one supervisor (1: one process)."""

    workers: int | Literal["auto"] = 1
    balance: Balance = Balance.REUSEPORT

    def __post_init__(self) -> None:
        if isinstance(self.workers, int) and not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f'workers: must be 1 to {MAX_WORKERS}, or "auto" (one per core)')

    @property
    def worker_count(self) -> int:
        """`workers`, with "auto" as the cores this process may run on."""
        if self.workers == "auto":
            return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))
        return self.workers


#: Worker processes at most: each holds a database connection pair and its own caps.
MAX_WORKERS = 64


class RtmpSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: str = "0.0.0.0:1935"
    app: str = "app"
    #: Addresses or networks allowed to play over RTMP (by public name); empty: nobody.
    allow_play: tuple[str, ...] = ()
    max_connections: Count = 1000
    max_connections_per_ip: Count = 50
    #: Seconds a drain (`rtmpd drain`, SIGTERM) gives publishers before ending them; 0: off.
    drain_grace: Seconds = 10.0
    #: Where drained publishers are asked to reconnect (a tcUrl); empty: where they are.
    drain_redirect: str = ""
    #: Read a PROXY protocol header (v1 or v2) from `trusted_proxies` on the RTMP listener.
    proxy_protocol: bool = False
    #: Load balancers allowed (and then required) to send one: addresses or CIDR networks.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parse_address(self.listen, "listen")
        if not self.app or "/" in self.app:
            raise ValueError("app: must be a non-empty name without '/'")
        for entry in self.allow_play:
            try:
                TrustedNetworks.parse((entry,))
            except ValueError:
                raise ValueError(
                    f"allow_play: {entry!r} is not an address or network (CIDR)"
                ) from None
        _check_proxies(self.proxy_protocol, self.trusted_proxies)
        if self.drain_redirect and not self.drain_redirect.startswith(_TC_URL_STARTS):
            raise ValueError(
                "drain_redirect: must be an rtmp:// or rtmps:// URL (or //host/app, /app)"
            )

    @property
    def address(self) -> Address:
        return parse_address(self.listen, "[rtmp] listen")

    @property
    def play_networks(self) -> TrustedNetworks:
        return TrustedNetworks.parse(self.allow_play)

    @property
    def proxy_policy(self) -> ProxyPolicy | None:
        if not self.proxy_protocol:
            return None
        return ProxyPolicy(TrustedNetworks.parse(self.trusted_proxies))


def _check_proxies(proxy_protocol: bool, trusted: tuple[str, ...]) -> None:
    try:
        TrustedNetworks.parse(trusted)
    except ValueError as exc:
        raise ValueError(f"trusted_proxies: {exc}") from None
    if proxy_protocol and not trusted:
        raise ValueError("proxy_protocol: needs trusted_proxies (the load balancers' addresses)")


_TC_URL_STARTS = ("rtmp://", "rtmps://", "/")


class RtmpsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """RTMP over TLS: the same app, keys and limits as [rtmp]; off unless cert and key are set
    (PEM files; relative paths against the config file's folder)."""

    listen: str = "0.0.0.0:1936"
    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        parse_address(self.listen, "listen")
        if bool(self.cert) != bool(self.key):
            raise ValueError("cert, key: set both (PEM files) or neither (RTMPS off)")

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    @property
    def address(self) -> Address:
        return parse_address(self.listen, "[rtmps] listen")


class HttpSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: str = "0.0.0.0:8080"
    access_log: bool = True
    keepalive_timeout: Seconds = 15.0
    send_timeout: Seconds = 60.0
    max_connections: Count = 4096
    max_connections_per_ip: Count = 256
    #: Peers whose X-Forwarded-Proto / X-Forwarded-For are believed (a reverse proxy), and,
    #: with `proxy_protocol`, whose PROXY header is read (then required of them).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    #: Read a PROXY protocol header (v1 or v2) from `trusted_proxies` on the HTTP listener.
    proxy_protocol: bool = False

    def __post_init__(self) -> None:
        parse_address(self.listen, "listen")
        for key in ("keepalive_timeout", "send_timeout"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: must be greater than 0")
        _check_proxies(self.proxy_protocol, self.trusted_proxies)

    @property
    def address(self) -> Address:
        return parse_address(self.listen, "[http] listen")

    @property
    def proxy_policy(self) -> ProxyPolicy | None:
        if not self.proxy_protocol:
            return None
        return ProxyPolicy(TrustedNetworks.parse(self.trusted_proxies))


class PushEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One `[[push]]` table: a destination every broadcast goes to (nginx-rtmp's `push`);
    without a key in the URL, the broadcast's public name is the stream name there."""

    url: str

    def __post_init__(self) -> None:
        try:
            destinations.parse_url(self.url)
        except destinations.InvalidDestination as exc:
            raise ValueError(f"url: {exc}") from None

    @property
    def target(self) -> destinations.DestinationUrl:
        return destinations.parse_url(self.url)

    def __repr__(self) -> str:  # the URL holds another service's key
        return f"PushEntry(url={destinations.redact(self.url)!r})"


class LogSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The file as written: one table per section."""

    server: ServerSection = msgspec.field(default_factory=ServerSection)
    rtmp: RtmpSection = msgspec.field(default_factory=RtmpSection)
    rtmps: RtmpsSection = msgspec.field(default_factory=RtmpsSection)
    http: HttpSection = msgspec.field(default_factory=HttpSection)
    hls: HlsConfig = msgspec.field(default_factory=HlsConfig)
    record: RecordConfig = msgspec.field(default_factory=RecordConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    log: LogSection = msgspec.field(default_factory=LogSection)
    push: tuple[PushEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """Every section, with relative paths resolved against `base_dir`."""

    server: ServerSection = field(default_factory=ServerSection)
    rtmp: RtmpSection = field(default_factory=RtmpSection)
    rtmps: RtmpsSection = field(default_factory=RtmpsSection)
    http: HttpSection = field(default_factory=HttpSection)
    hls: HlsConfig = field(default_factory=HlsConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    web: WebConfig = field(default_factory=WebConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    log: LogSection = field(default_factory=LogSection)
    push: tuple[PushEntry, ...] = ()
    base_dir: Path = field(default_factory=Path.cwd)
    source: Path | None = None
    #: The tables as read (what worker processes are started from: the same file, as read once).
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolved = {
            "hls": msgspec.structs.replace(self.hls, path=self.resolve(self.hls.path)),
            "database": msgspec.structs.replace(
                self.database, path=self.resolve(self.database.path)
            ),
            "record": msgspec.structs.replace(self.record, path=self.resolve(self.record.path)),
        }
        if self.web.hlsjs_file:
            hlsjs = str(self.resolve(self.web.hlsjs_file))
            resolved["web"] = msgspec.structs.replace(self.web, hlsjs_file=hlsjs)
        if self.rtmps.enabled:
            cert, key = (str(self.resolve(p)) for p in (self.rtmps.cert, self.rtmps.key))
            resolved["rtmps"] = msgspec.structs.replace(self.rtmps, cert=cert, key=key)
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        if self.auth.on_play and not self.rtmp.allow_play:
            raise ConfigError(
                "[auth] on_play: RTMP play is refused to every address while [rtmp] allow_play "
                'is empty; list the addresses or networks that may play (e.g. "0.0.0.0/0")'
            )

    @property
    def rtmp_address(self) -> Address:
        return self.rtmp.address

    @property
    def pid_file(self) -> Path:
        """Where `serve` writes its process id and `rtmpd drain` reads it: next to the
        database, which both already agree on."""
        return self.database.path.parent / "rtmpd.pid"

    @property
    def http_address(self) -> Address:
        return self.http.address

    @property
    def hls_path(self) -> Path:
        return self.hls.path

    @property
    def database_path(self) -> Path:
        return self.database.path

    def resolve(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def publish_url_hint(self) -> str:
        """The publish URL (without the key) shown to streamers: `[web] public_rtmp_url`, else
        the RTMP listen address when it is not a wildcard, else this host's name. Never a
        placeholder: a newcomer pastes what `rtmpd users add` prints."""
        if self.web.public_rtmp_url:
            return self.web.public_rtmp_url.rstrip("/")
        addr = self.rtmp_address
        host = host_name() if addr.host in ("0.0.0.0", "::") else addr.host
        host = f"[{host}]" if ":" in host else host
        return f"rtmp://{host}:{addr.port}/{self.rtmp.app}"

    def public_http_url(self, port: int) -> str:
        """This node's HTTP base URL for viewers (no trailing slash): `[web] public_http_url`,
        else the HTTP listen address (bound `port`) or, for a wildcard, this host's name."""
        if self.web.public_http_url:
            return self.web.public_http_url.rstrip("/")
        addr = self.http_address
        host = host_name() if addr.host in ("0.0.0.0", "::") else addr.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    @property
    def publish_url_guessed(self) -> bool:
        """True when the publish URL was derived rather than set in `[web] public_rtmp_url`."""
        return not self.web.public_rtmp_url


def host_name() -> str:
    """This machine's name as others may reach it: the FQDN, unless that is only localhost
    (Debian's /etc/hosts often maps the host name there), then the plain host name."""
    fqdn = socket.getfqdn()
    if fqdn and not fqdn.startswith("localhost") and fqdn not in ("127.0.0.1", "::1"):
        return fqdn
    return socket.gethostname() or "localhost"


def from_dict(data: dict[str, Any], base_dir: Path, source: Path | None = None) -> Config:
    try:
        parsed = msgspec.convert(data, _File, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), data)) from None
    sections = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(Config)
                if f.name not in ("base_dir", "source", "data")}  # fmt: skip
    return Config(**sections, base_dir=base_dir, source=source, data=data)


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


# -- msgspec's messages in the words of a config file ---------------------------------------

_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false",
               "str": "a string", "object": "a table", "array": "a list"}  # fmt: skip
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_EXPECTED = re.compile(r"^Expected `(?P<type>\w+)`(?:, got `\w+`| (?P<op>[<>]=?) (?P<bound>\S+))$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise TypeError(f"expected a path, got {value!r}")


def _explain(message: str, data: dict[str, Any]) -> str:
    """'Expected `float`, got `str` - at `$.hls.fragment`' -> "[hls] fragment: expected a
    number, got '5'"; likewise for unknown keys, bounds, choices and checks of the sections."""
    m = _AT.match(message)
    assert m is not None
    what, path = m["what"], [p for p in (m["path"] or "").split(".") if p]
    section = path[0] if path else ""
    key = path[1] if len(path) > 1 else ""
    if (unknown := _UNKNOWN.match(what)) is not None:
        if not section:
            return f"unknown section [{unknown['key']}]"
        return f"unknown key [{section}] {unknown['key']}"
    where = f"[{section}] {key}".strip()
    if (expected := _EXPECTED.match(what)) is not None:
        if expected["op"] is not None:
            bound = expected["bound"].removesuffix(".0")
            if expected["op"] == ">=" and bound == "0":
                return f"{where}: must not be negative"
            return f"{where}: must be {expected['op']} {bound}"
        words = _TYPE_WORDS.get(expected["type"], expected["type"])
        if not key:
            return f"[{section}] must be a table" if words == "a table" else f"{where}: {what}"
        return f"{where}: expected {words}, got {_value(data, section, key)!r}"
    if what.startswith("Invalid enum value"):
        return f"{where}: {_value(data, section, key)!r} is not one of {_choices(section, key)}"
    if not key and ": " in what:  # a section's own check: "key: problem"
        return f"[{section}] {what}"
    return f"{where}: {what}" if where else what


def _value(data: dict[str, Any], section: str, key: str) -> Any:
    table = data.get(section)
    return table.get(key) if isinstance(table, dict) else None


def _choices(section: str, key: str) -> str:
    struct = typing.get_type_hints(_File)[section]
    kind = typing.get_type_hints(struct)[key]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return ", ".join(str(member.value) for member in kind)
    return ", ".join(str(a) for a in typing.get_args(kind))
