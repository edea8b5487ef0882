"""The OpenAPI 3.1 document served at /api/openapi.json: the public stream API and the admin API.

Written by hand next to the handlers (web/app.py, web/admin_api.py) and kept true by the suite:
schemathesis runs it against a live server (tests/test_api_schema.py), and a test checks that
every /api route is in it and nothing else.
"""

from __future__ import annotations

from typing import Any

VERSION = "1.0.0"

NAME_PATTERN = r"^[a-z0-9_]{2,32}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties, **extra}


_TIME = _nullable("string", format="date-time")

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}}),
    "Video": _object(
        {
            "codec": {
                "type": "string",
                "description": (
                    "RFC 6381 (HLS's CODECS), e.g. avc1.64001f, hvc1.1.6.L93.B0, "
                    "av01.0.08M.08, vp09.00.31.08"
                ),
            },
            "name": _nullable("string", description="For people: H.264, HEVC, AV1 or VP9"),
            "width": _nullable("integer"),
            "height": _nullable("integer"),
            "fps": _nullable("number"),
            "kbps": _nullable("number"),
        }
    ),  # fmt: skip
    "Audio": _object(
        {
            "codec": {
                "type": "string",
                "description": ("RFC 6381 (HLS's CODECS), e.g. mp4a.40.2, opus, fLaC, ac-3, ec-3"),
            },
            "name": _nullable(
                "string", description="For people: AAC, HE-AAC, MP3, Opus, FLAC, AC-3 or E-AC-3"
            ),
            "sample_rate": _nullable("integer"),
            "channels": _nullable("integer"),
            "kbps": _nullable("number"),
        }
    ),  # fmt: skip
    "Stream": _object(
        {
            "name": {"type": "string"},
            "live": {"type": "boolean"},
            "live_since": _TIME,
            "uptime_seconds": _nullable("integer", minimum=0),
            "playlist_url": {"type": "string"},
            "video": {"oneOf": [_ref("Video"), {"type": "null"}]},
            "audio": {"oneOf": [_ref("Audio"), {"type": "null"}]},
            "viewers": {"type": "integer", "minimum": 0},
        }
    ),  # fmt: skip
    "StreamList": _object({"streams": {"type": "array", "items": _ref("Stream")}}),
    "User": _object(
        {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "active": {"type": "boolean", "description": "false: banned"},
            "live": {"type": "boolean"},
            "live_since": _TIME,
            "created": {"type": "string", "format": "date-time"},
            "last_publish_end": _TIME,
            "channel_url": {"type": "string"},
        }
    ),  # fmt: skip
    "UserList": _object({"users": {"type": "array", "items": _ref("User")}}),
    "NewUser": _object(
        {
            "name": {
                "type": "string",
                "pattern": NAME_PATTERN,
                "description": "2 to 32 of a-z, 0-9, _; some names (api, live, ...) are "
                "reserved: 409",
            }
        },  # fmt: skip
        additionalProperties=False,
    ),
    "UserWithKey": _object(
        {
            "user": _ref("User"),
            "key": {"type": "string", "description": "the stream key: shown in this answer only"},
        }
    ),  # fmt: skip
    "Publish": _object(
        {
            "name": {"type": "string"},
            "since": {"type": "string", "format": "date-time"},
            "peer": {"type": "string", "description": "the publisher's address"},
            "bytes_received": {"type": "integer", "minimum": 0},
            "ingest_kbps": _nullable("number"),
            "fps": _nullable("number"),
            "keyframe_interval": _nullable("number", description="seconds between keyframes"),
            "segment_lag": _nullable("number", description="seconds from media to playlist"),
            "segment_duration": _nullable("number", description="the last segment's, seconds"),
            "fragment": {"type": "number", "description": "the target segment duration"},
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "what the streamer can change in their encoder",
            },
            "video": {"oneOf": [_ref("Video"), {"type": "null"}]},
            "audio": {"oneOf": [_ref("Audio"), {"type": "null"}]},
        }
    ),  # fmt: skip
    "PublishList": _object({"publishes": {"type": "array", "items": _ref("Publish")}}),
    "HealthSample": _object(
        {
            "t": {"type": "number", "description": "Unix time"},
            "kbps": {"type": "number"},
            "fps": {"type": "number"},
            "keyframe_interval": _nullable("number"),
            "segment_lag": _nullable("number"),
        }
    ),  # fmt: skip
    "Health": _object(
        {
            "name": {"type": "string"},
            "interval": {"type": "number", "description": "seconds between samples"},
            "samples": {
                "type": "array",
                "items": _ref("HealthSample"),
                "description": "the last ten minutes, oldest first",
            },
        }
    ),  # fmt: skip
}

_STREAM_NAME = {"name": "name", "in": "path", "required": True, "example": "benw",
                "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}}  # fmt: skip
_USER_NAME = {"name": "name", "in": "path", "required": True, "example": "benw",
              "schema": {"type": "string", "pattern": NAME_PATTERN}}  # fmt: skip
_DENIED = {
    "401": _error("no valid API token (whatever the path: nothing tells what exists)"),
    "429": _error("too many failed tokens from this address; refused without a lookup"),
}
_GONE = {"404": _error("no such user")}
_NOT_LIVE = {"404": _error("not live")}
_DB = {"503": _error("the database is busy or unavailable; try again")}


def _admin(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "tags": ["admin"], "security": [{"token": []}],
            "responses": {**responses, **_DENIED}, **extra}  # fmt: skip


def _user_op(summary: str, ok: dict[str, Any], example: str = "benw") -> dict[str, Any]:
    parameter = {**_USER_NAME, "example": example}
    return _admin(summary, {**ok, **_GONE, **_DB}, parameters=[parameter])


PATHS: dict[str, Any] = {
    "/api/streams": {
        "get": {
            "summary": "Channels live now",
            "tags": ["public"],
            "security": [],
            "responses": {"200": _json(_ref("StreamList"), "live channels")},
        }
    },  # fmt: skip
    "/api/streams/{name}": {
        "get": {
            "summary": "One channel, live or not",
            "tags": ["public"],
            "security": [],
            "parameters": [_STREAM_NAME],
            "responses": {
                "200": _json(_ref("Stream"), "the channel"),
                "404": _error("no such channel"),
            },
        }
    },  # fmt: skip
    "/api/admin/users": {
        "get": _admin("All users", {"200": _json(_ref("UserList"), "users by name"), **_DB}),
        "post": _admin(
            "Create a user; the answer holds their stream key, shown only here",
            {
                "201": _json(_ref("UserWithKey"), "created"),
                "400": _error("not a JSON object with a valid name"),
                "409": _error("the name is taken or reserved"),
                "415": _error("the body is not application/json"),
                **_DB,
            },
            requestBody={
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("NewUser"), "example": {"name": "carol"}}
                },
            },
        ),  # fmt: skip
    },
    "/api/admin/users/{name}": {
        "get": _user_op("One user", {"200": _json(_ref("User"), "the user")}),
        "delete": _user_op(
            "Remove a user (cuts their live publish within 2 s)",
            {"204": {"description": "removed"}},
            example="alice",
        ),  # fmt: skip
    },
    "/api/admin/users/{name}/ban": {
        "post": _user_op(
            "Ban a user: refused from now on, live publish cut within 2 s; a user.banned webhook",
            {"200": _json(_ref("User"), "banned (also when already banned)")},
        )
    },  # fmt: skip
    "/api/admin/users/{name}/unban": {
        "post": _user_op(
            "Let a banned user publish again",
            {"200": _json(_ref("User"), "active")},
        )
    },  # fmt: skip
    "/api/admin/users/{name}/rotate-key": {
        "post": _user_op(
            "A new stream key (shown only here); the old one stops working, its publish is cut",
            {"200": _json(_ref("UserWithKey"), "the new key")},
        )
    },  # fmt: skip
    "/api/admin/publishes": {
        "get": _admin(
            "Live publishes with their latest numbers and warnings",
            {"200": _json(_ref("PublishList"), "live publishes by name")},
        )
    },  # fmt: skip
    "/api/admin/publishes/{name}": {
        "get": _admin(
            "One live publish",
            {"200": _json(_ref("Publish"), "live"), **_NOT_LIVE},
            parameters=[_STREAM_NAME],
        ),  # fmt: skip
        "delete": _admin(
            "Kick: disconnect the publisher (it may reconnect; ban to keep it off)",
            {"204": {"description": "disconnected"}, **_NOT_LIVE},
            parameters=[_STREAM_NAME],
        ),
    },
    "/api/admin/publishes/{name}/health": {
        "get": _admin(
            "One sample per second over the last ten minutes",
            {"200": _json(_ref("Health"), "samples"), **_NOT_LIVE},
            parameters=[_STREAM_NAME],
        )
    },  # fmt: skip
}

DESCRIPTION = """\
rtmpd's HTTP API. The public part (`/api/streams`) needs nothing; the admin part
(`/api/admin/`) needs `Authorization: Bearer <token>` with a token made by `rtmpd tokens add`.
The dashboard at /admin uses a session cookie instead, with a CSRF token for changes.
Errors are `{"error": "..."}`. Stream keys appear in exactly two answers, once each: creating a
user and rotating a key. Changes act like `rtmpd users` (bans, removals and new keys cut a live
publish within 2 seconds). Planned: `/api/admin/users/{name}/destinations` (push destinations)
and `/api/admin/recordings`."""


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "rtmpd", "version": VERSION, "description": DESCRIPTION},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (rtmpd tokens add)",
                }
            },
        },  # fmt: skip
    }
