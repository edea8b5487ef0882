"""The Python values AMF0 and AMF3 decode to, beyond the builtins (str, float, dict, ...).

They live apart from both codecs because both need them: AMF0 embeds AMF3 values (the avmplus
marker), so amf0 imports amf3, and amf3 must get these types without importing amf0 back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class _Singleton:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: AMF "undefined" (distinct from null/None).
UNDEFINED = _Singleton("UNDEFINED")
#: AMF0 "unsupported".
UNSUPPORTED = _Singleton("UNSUPPORTED")


class EcmaArray(dict[str, Any]):
    """An associative array (what onMetaData usually carries); otherwise a plain dict."""


@dataclass(frozen=True, slots=True)
class Date:
    milliseconds: float  # since the Unix epoch, UTC
    timezone: int = 0  # minutes; "should be 0" per spec


@dataclass(frozen=True, slots=True)
class XmlDocument:
    text: str


@dataclass(slots=True)
class TypedObject:
    class_name: str
    properties: dict[str, Any] = field(default_factory=dict)
