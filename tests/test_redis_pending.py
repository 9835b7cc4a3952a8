"""What waits for a Redis publisher (``wsroute.brokers.redis.pending``): its commands
are what coredis's own requests would write, built without their per-command work."""

from __future__ import annotations

from coredis.commands import CommandRequest

from wsroute import History
from wsroute.brokers.redis import kept
from wsroute.brokers.redis.known import Known
from wsroute.brokers.redis.pending import Command, Pending


def written(request: CommandRequest[object]) -> tuple[object, ...]:
    """What a connection reads of a request to write it and read its reply."""
    return request.name, request.serialized_arguments, request.decode, request.noreply


def test_a_publish_is_written_as_coredis_would() -> None:
    for verb in (b"PUBLISH", b"SPUBLISH"):
        light = Pending(b"app:room:1", b'{"type":"x"}').request(verb)
        full = CommandRequest(verb, b"app:room:1", b'{"type":"x"}', execution_parameters={})
        assert isinstance(light, Command)
        assert written(light) == written(full)


def test_a_script_call_is_written_as_coredis_would() -> None:
    call = kept.publish_call(
        b"app:", "room:1", b"app:room:1", b"{}", History(size=10, ttl=60), b"seed", Known()
    )
    for loaded in (True, False):
        light = call.evaluate(loaded=loaded)
        name, body = (b"EVALSHA", call.script.sha) if loaded else (b"EVAL", call.script.source)
        full = CommandRequest(
            name, body, len(call.keys), *call.keys, *call.args, execution_parameters={}
        )
        assert written(light) == written(full)
        assert light.serialized_arguments[1] == 2  # the count of keys, an int as coredis sends it
