"""What a server session writes: every outgoing message is cut into chunks here, and the bytes
wait until the socket layer asks for them (`take`, behind ServerSession.data_to_send).

One object, shared by the session and the command handlers, so that all output goes through one
ChunkWriter (its header compression depends on every message sent before) in order.
"""

from __future__ import annotations

from typing import Any

from . import messages as msgs
from .chunk import ChunkWriter, SerializedMessage
from .messages import ChunkStreamId, MessageType, encode_command, status_info


class Output:
    """Outgoing messages of one connection, as bytes ready for the socket."""

    __slots__ = ("_writer", "_out")

    def __init__(self) -> None:
        self._writer = ChunkWriter()
        self._out: list[bytes] = []

    def raw(self, data: bytes) -> None:
        """Bytes that are not chunked messages (the handshake)."""
        self._out.append(data)

    def send(self, csid: int, msg_type: int, stream_id: int, payload: bytes) -> None:
        self._out.append(self._writer.write(csid, msg_type, stream_id, 0, payload))

    def serialized(self, msg: SerializedMessage) -> None:
        """A message cut once for many connections (`serialize_message`), sent as it is."""
        self._writer.note_sent(msg)
        self._out.append(msg.data)

    @property
    def chunk_size(self) -> int:
        return self._writer.chunk_size

    def control(self, payload: bytes, msg_type: int = MessageType.USER_CONTROL) -> None:
        self.send(ChunkStreamId.CONTROL, msg_type, 0, payload)

    def command(self, stream_id: int, name: str, tid: float, *args: Any) -> None:
        payload = encode_command(name, tid, *args)
        self.send(ChunkStreamId.COMMAND, MessageType.COMMAND_AMF0, stream_id, payload)

    def status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self.command(stream_id, "onStatus", 0, None, status_info(level, code, description))

    def set_chunk_size(self, size: int) -> None:
        """Announce our chunk size, then cut every later message with it."""
        self.control(msgs.set_chunk_size(size), MessageType.SET_CHUNK_SIZE)
        self._writer.set_chunk_size(size)

    def take(self) -> bytes:
        """Everything written since the last call."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)
