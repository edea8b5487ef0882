"""Named limits of the protocol core.

Every bound a hostile peer could otherwise push on lives here, so an operator (and a reviewer)
can see in one place how much memory and time one connection may cost.
"""

from __future__ import annotations

# --- chunk stream -----------------------------------------------------------------------------

#: Chunk size both sides start with (RTMP spec, 5.4.1).
DEFAULT_CHUNK_SIZE = 128
#: Largest chunk size we honour. Bigger values are clamped: no message can be longer than
#: 0xFFFFFF bytes, so any chunk size past that behaves the same.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
#: Largest message we assemble (the 24-bit length field cannot say more anyway).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Sum of the declared lengths of all messages being assembled at once; payload buffers are
#: preallocated, so this bounds what a few header bytes can make us allocate.
MAX_PENDING_PAYLOAD = 32 * 1024 * 1024
#: Distinct chunk stream ids one connection may use (clients use 3 to 6 of them).
MAX_CHUNK_STREAMS = 64
#: Distinct message stream ids whose timestamps we track for unwrapping.
MAX_MESSAGE_STREAMS = 64
#: Bytes fed but not yet parsed. The chunk parser streams payload straight into the message
#: buffer, so only a partial chunk header (at most 18 bytes) is ever left over between feeds.
MAX_UNPARSED_BYTES = 256 * 1024
#: The session feeds its receive buffer in slices of at most this size.
RECV_SLICE = 64 * 1024

# --- AMF ----------------------------------------------------------------------------------------

#: Nesting depth of objects/arrays in one AMF value.
MAX_AMF_DEPTH = 32
#: Longest AMF string (long string, XML, AMF3 string) we decode.
MAX_AMF_STRING = 1024 * 1024
#: Largest command or data message (types 15, 17, 18, 20) we decode: commands are small, and
#: decoding turns bytes into many Python objects, so the cap is much lower than for media.
MAX_COMMAND_SIZE = 1024 * 1024

# --- session ------------------------------------------------------------------------------------

#: Longest app or stream name in bytes (UTF-8).
MAX_NAME_BYTES = 256
#: Longest query string after a stream name ("key?token=..."), in bytes (UTF-8).
MAX_QUERY_BYTES = 4096
#: Streams one connection may create (createStream).
MAX_STREAMS_PER_CONNECTION = 8
#: Largest codec configuration record (AVCDecoderConfigurationRecord, AudioSpecificConfig).
MAX_CONFIG_SIZE = 64 * 1024
#: Seconds from accept to a completed handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds from the handshake (and again from connect) to a publish request.
CONNECT_TO_PUBLISH_TIMEOUT = 10.0
#: Seconds a publishing stream may go without any audio or video message.
PUBLISH_IDLE_TIMEOUT = 30.0
#: Chunk size the server announces after connect.
SERVER_CHUNK_SIZE = 4096
#: Window acknowledgement size and peer bandwidth the server announces after connect.
WINDOW_ACK_SIZE = 2_500_000
PEER_BANDWIDTH = 2_500_000
