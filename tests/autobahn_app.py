"""An echo server for the Autobahn conformance run (tests/test_autobahn.py).

Every text or binary message is sent back unchanged through the documented low-level
route, ``@app.frame_handler``, so the run exercises wsroute's own reader, request
queue, outbox and writer, not a bare trio-websocket loop. To run the suite by hand::

    wsroute run tests.autobahn_app:app --port 9001
    kosoku ws://127.0.0.1:9001 -x '12.*' -x '13.*' -o reports

``compressed_app`` is the same with permessage-deflate, for groups 12 and 13::

    wsroute run tests.autobahn_app:compressed_app --port 9002
    kosoku ws://127.0.0.1:9002 -i '12.*' -i '13.*' -p 4 -o reports

Only what the cases need differs from the defaults: the 9.x cases send messages of
up to 16 MiB, and the heartbeat is off so that no ping of ours can appear among the
frames a case expects. Nothing subscribes to a topic.

The compressed app compresses every message (``threshold=0``): kosoku 0.1.0's group
12 cases fail on a text message echoed uncompressed in a compressed session (they
hash a ``str``), which RFC 7692 allows and wsroute does below the threshold
(tests/test_compression.py checks that path with the ``websockets`` client). Level 1
keeps the 216 cases, about 10 GB through zlib each way, to a few minutes.
"""

from __future__ import annotations

from wsroute import App, Deflate


def echo_app(compression: Deflate | None = None) -> App:
    app = App(
        max_message_size=16 * 1024 * 1024,
        ping_interval=None,
        default_topic=None,
        compression=compression,
    )

    @app.frame_handler
    async def echo(frame: str | bytes) -> str | bytes:
        return frame

    return app


app = echo_app()
compressed_app = echo_app(Deflate(threshold=0, level=1))
