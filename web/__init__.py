"""The aiohttp application: HLS delivery, channel pages, JSON API, metrics."""

from .app import (
    ACCESS_LOG_FORMAT,
    DEFAULT_HLSJS_URL,
    RESERVED_NAMES,
    create_app,
    make_runner,
)
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
    "create_app",
    "make_runner",
]
