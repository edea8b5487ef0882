"""The OpenAPI 3.1 document served at /api/openapi.json: the public stream API and the admin API.

Written by hand next to the handlers (web/app.py, web/admin_api.py) and kept true by the suite:
schemathesis runs it against a live server (tests/test_api_schema.py), and a test checks that
every /api route is in it and nothing else.
"""

from __future__ import annotations

from typing import Any

VERSION = "1.0.0"

NAME_PATTERN = r"^[a-z0-9_]{2,32}$"
_PORT = r"6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
#: What the server takes as a push destination (it refuses more, e.g. user info, with a 400).
DESTINATION_PATTERN = (
    rf"^rtmps?://[A-Za-z0-9.-]+(:({_PORT}))?/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~?=&%-]*)?$"
)


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
    "Rendition": _object(
        {
            "track": {"type": "integer", "minimum": 0, "description": "Its video track"},
            "playlist_url": {"type": "string", "description": "Its media playlist"},
            "codec": _nullable("string", description="RFC 6381, as in Video"),
            "name": _nullable("string", description="For people: H.264, HEVC, AV1 or VP9"),
            "width": _nullable("integer"),
            "height": _nullable("integer"),
            "fps": _nullable("number"),
            "kbps": _nullable("number"),
        },
        description=(
            "A rendition of a multitrack publish (enhanced RTMP multitrack video): one video "
            "track with track 0's audio; playlist_url (the stream's) is then a multivariant "
            "playlist over them"
        ),
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
            "renditions": {
                "type": "array",
                "items": _ref("Rendition"),
                "description": "Multitrack video: every rendition, track 0's first; else empty",
            },
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
            "destinations": {"type": "array", "items": _ref("Push")},
            "video": {"oneOf": [_ref("Video"), {"type": "null"}]},
            "audio": {"oneOf": [_ref("Audio"), {"type": "null"}]},
            "worker": _nullable(
                "string", description="the worker process holding it; null with one process"
            ),
        }
    ),  # fmt: skip
    "PublishList": _object(
        {
            "publishes": {"type": "array", "items": _ref("Publish")},
            "unanswered_workers": {
                "type": "array",
                "items": {"type": "string"},
                "description": "worker processes that did not answer in time: their "
                "publishes are missing from the list",
            },
        }
    ),
    "Push": _object(
        {
            "id": _nullable("integer", description="the user's destination; null: [[push]]"),
            "url": {"type": "string", "description": "redacted: the key is a fingerprint"},
            "connected": {"type": "boolean"},
            "kbps": {"type": "number", "description": "sent over the last second"},
            "dropped": {
                "type": "integer",
                "minimum": 0,
                "description": "messages dropped to the next keyframe (a slow destination)",
            },
            "last_error": _nullable("string"),
        }
    ),  # fmt: skip
    "Destination": _object(
        {
            "id": {"type": "integer"},
            "url": {"type": "string", "description": "redacted: the key is a fingerprint"},
            "created": {"type": "string", "format": "date-time"},
            "live": {
                "oneOf": [_ref("Push"), {"type": "null"}],
                "description": "while the user broadcasts",
            },
        }
    ),  # fmt: skip
    "DestinationList": _object({"destinations": {"type": "array", "items": _ref("Destination")}}),
    "NewDestination": _object(
        {
            "url": {
                "type": "string",
                "description": "rtmp://host/app/KEY or rtmps://...: another service's ingest URL",
                "example": "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl",
                "maxLength": 2048,
                "pattern": DESTINATION_PATTERN,
            }
        },
        additionalProperties=False,
    ),
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

_RECORDING = {
    "id": {"type": "string", "description": "its start in UTC, e.g. 20261202-201500"},
    "name": {"type": "string"},
    "started_at": {"type": "string", "format": "date-time"},
    "ended_at": _TIME,
    "duration_seconds": {"type": "number", "minimum": 0},
    "bytes": {"type": "integer", "minimum": 0, "description": "every file of it on disk"},
    "recording": {"type": "boolean", "description": "true while the broadcast goes on"},
    "playlist_url": {"type": "string", "description": "HLS (EXT-X-PLAYLIST-TYPE:VOD once ended)"},
    "mp4_url": _nullable("string", description="the MP4 download, once made"),
    "thumbnail_url": _nullable("string"),
    "discontinuities": {"type": "integer", "minimum": 0},
    "lost_segments": {
        "type": "integer",
        "minimum": 0,
        "description": "lost to a full disk: an EXT-X-DISCONTINUITY marks where",
    },
}
SCHEMAS["Recording"] = _object(_RECORDING)
SCHEMAS["RecordingList"] = _object({"recordings": {"type": "array", "items": _ref("Recording")}})
SCHEMAS["AdminRecording"] = _object(
    {
        **_RECORDING,
        "mp4_error": _nullable("string", description="why no MP4 was made"),
        "stopped": _nullable("string", description="why it stopped before the broadcast did"),
    }
)
SCHEMAS["AdminRecordingList"] = _object(
    {"recordings": {"type": "array", "items": _ref("AdminRecording")}}
)

_STREAM_NAME = {"name": "name", "in": "path", "required": True, "example": "benw",
                "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}}  # fmt: skip
_USER_NAME = {"name": "name", "in": "path", "required": True, "example": "benw",
              "schema": {"type": "string", "pattern": NAME_PATTERN}}  # fmt: skip
_DENIED = {
    "401": _error("no valid API token (whatever the path: nothing tells what exists)"),
    "429": _error("too many failed tokens from this address; refused without a lookup"),
}
_RECORDING_ID = {"name": "id", "in": "path", "required": True, "example": "20261202-201500",
                 "schema": {"type": "string", "pattern": r"^\d{8}-\d{6}(-\d{1,4})?$"}}  # fmt: skip
_GONE = {"404": _error("no such user")}
_NOT_LIVE = {
    "404": _error("not live"),
    "503": _error("not live on the worker processes that answered; one did not"),
}
_DB = {"503": _error("the database is busy or unavailable; try again")}


def _admin(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "tags": ["admin"], "security": [{"token": []}],
            "responses": {**responses, **_DENIED}, **extra}  # fmt: skip


def _user_op(
    summary: str, ok: dict[str, Any], example: str = "benw", **extra: Any
) -> dict[str, Any]:
    parameter = {**_USER_NAME, "example": example}
    return _admin(summary, {**ok, **_GONE, **_DB}, parameters=[parameter], **extra)


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
    "/api/streams/{name}/recordings": {
        "get": {
            "summary": "A channel's past broadcasts, newest first ([record])",
            "tags": ["public"],
            "security": [],
            "parameters": [_STREAM_NAME],
            "responses": {
                "200": _json(_ref("RecordingList"), "finished recordings (none with [record] off)"),
                "404": _error("no such channel"),
            },
        }
    },  # fmt: skip
    "/api/admin/recordings": {
        "get": _admin(
            "Every recording, newest first, those being recorded included",
            {"200": _json(_ref("AdminRecordingList"), "recordings")},
        )
    },  # fmt: skip
    "/api/admin/recordings/{name}": {
        "get": _admin(
            "The recordings of one channel, newest first",
            {
                "200": _json(_ref("AdminRecordingList"), "recordings (maybe none)"),
                "404": _error("not a channel name"),
            },
            parameters=[_STREAM_NAME],
        )
    },  # fmt: skip
    "/api/admin/recordings/{name}/{id}": {
        "delete": _admin(
            "Remove a finished recording (as `rtmpd recordings remove`)",
            {
                "204": {"description": "removed"},
                "404": _error("no such recording"),
                "409": _error("it is being recorded"),
            },
            parameters=[_STREAM_NAME, _RECORDING_ID],
        )
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
    "/api/admin/users/{name}/destinations": {
        "get": _user_op(
            "The user's push destinations (URLs redacted), with their state while live",
            {"200": _json(_ref("DestinationList"), "destinations, oldest first")},
        ),
        "post": _user_op(
            "Add a push destination (from the user's next broadcast on); its URL is never "
            "shown again, this answer included",
            {
                "201": _json(_ref("Destination"), "added"),
                "400": _error("not a JSON object with a usable rtmp:// or rtmps:// URL"),
                "415": _error("the body is not application/json"),
            },
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("NewDestination"),
                        "example": {"url": "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl"},
                    }
                },
            },
        ),  # fmt: skip
    },
    "/api/admin/users/{name}/destinations/{id}": {
        "delete": _admin(
            "Remove a push destination",
            {
                "204": {"description": "removed"},
                "404": _error("no such user or destination"),
                **_DB,
            },
            parameters=[
                _USER_NAME,
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                    "example": 1,
                },
            ],
        ),  # fmt: skip
    },
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
publish within 2 seconds). Push destinations' URLs carry other services' keys: every answer
shows them redacted. Recordings of past broadcasts ([record]) are listed under
`/api/streams/{name}/recordings` and `/api/admin/recordings`."""


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
