"""An echo server for the Autobahn conformance run (tests/test_autobahn.py).

Every text or binary message is sent back unchanged through the documented low-level
route, ``@app.frame_handler``, so the run exercises wsroute's own reader, request
queue, outbox and writer, not a bare trio-websocket loop. To run the suite by hand::

    wsroute run tests.autobahn_app:app --port 9001
    kosoku ws://127.0.0.1:9001 -x '12.*' -x '13.*' -o reports

Only what the cases need differs from the defaults: the 9.x cases send messages of
up to 16 MiB, and the heartbeat is off so that no ping of ours can appear among the
frames a case expects. Nothing subscribes to a topic.
"""

from __future__ import annotations

from wsroute import App

app = App(max_message_size=16 * 1024 * 1024, ping_interval=None, default_topic=None)


@app.frame_handler
async def echo(frame: str | bytes) -> str | bytes:
    return frame
