"""Errors the protocol core raises. One base class, so the socket layer can close the one
connection that misbehaved with a clear reason and keep every other stream going."""


class ProtocolError(Exception):
    """The peer broke the RTMP protocol (or one of our limits); the connection must close."""


class HandshakeError(ProtocolError):
    """The handshake could not complete (wrong version, short or malformed packets)."""
