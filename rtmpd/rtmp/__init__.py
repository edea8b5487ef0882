"""The RTMP protocol core, sans-I/O: bytes and time in, events and bytes out.

One module per wire layer (buffer, handshake, chunk, amf_values/amf0/amf3, messages, flv), the
server session and what it holds (states, commands, output, session; its config beside the
limits) and a publishing client. Nothing here imports asyncio, sqlite, PyAV or aiohttp;
`rtmpd.server` is the one module that runs its server session on sockets, `rtmpd.client_link`
the one that runs its client.
"""
