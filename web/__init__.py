"""The aiohttp application: HLS delivery, channel pages, JSON API, metrics."""

from .app import (
    ACCESS_LOG_FORMAT,
    RESERVED_NAMES,
    create_app,
    make_runner,
)
from .config import DEFAULT_HLSJS_URL, WebConfig
from .directory import Channel, Directory, StreamStats
from .metrics import Metrics

__all__ = [
    "ACCESS_LOG_FORMAT",
    "DEFAULT_HLSJS_URL",
    "RESERVED_NAMES",
    "Channel",
    "Directory",
    "Metrics",
    "StreamStats",
    "WebConfig",
    "create_app",
    "make_runner",
]
