"""The WebSocket protocol, sans-IO: bytes in, events and bytes out.

- ``handshake``: the opening handshake, server side: read the upgrade request (or a
  plain HTTP request), negotiate subprotocols and extensions, write the answer.
  ``client_handshake`` is the client's side (for the test kit), ``headers`` the
  syntax both share.
- ``frames``: frame headers, masking, close payloads, frames prepared once for many
  connections.
- ``protocol``: an open connection's state machine: messages, control frames, the
  closing handshake, limits. ``events`` holds what it reports, ``sender`` its
  sending half.
- ``deflate``: permessage-deflate's options and a connection's codec;
  ``deflate_negotiation`` agrees on them from the client's offers.

Nothing here imports trio or touches a socket (an import-linter contract checks it):
``wsroute._server`` reads and writes the bytes.
"""
