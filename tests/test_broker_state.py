"""Broker state changes reach on_broker_state hooks and, if enabled, every client."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from wsroute import App, RegistrationError
from wsroute.brokers import BrokerState, MemoryBroker, StateListener
from wsroute.testing import Event, open_client


class ObservableBroker(MemoryBroker):
    """A memory broker that lets the test report state changes, as Redis would."""

    listener: StateListener | None = None

    def connect(self, *, on_state: StateListener | None = None) -> Any:
        self.listener = on_state
        return super().connect(on_state=on_state)


def make_app(**options: Any) -> tuple[App, ObservableBroker, list[BrokerState]]:
    broker = ObservableBroker()
    app = App(broker=broker, **options)
    seen: list[BrokerState] = []

    @app.on_broker_state
    async def record(state: BrokerState) -> None:
        seen.append(state)

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    return app, broker, seen


async def test_hooks_and_client_events(autojump_clock):
    app, broker, seen = make_app(broker_state_events=True)
    async with open_client(app) as client:
        assert broker.listener is not None
        broker.listener(BrokerState.DISCONNECTED)
        assert await client.expect_event("broker_state") == Event(
            "broker_state", None, {"state": "disconnected"}
        )
        broker.listener(BrokerState.CONNECTED)
        assert (await client.expect_event("broker_state")).data == {"state": "connected"}
        assert await client.request("ping") == "pong"
        await trio.sleep(0.1)
    assert seen == [BrokerState.DISCONNECTED, BrokerState.CONNECTED]


async def test_no_client_events_unless_enabled(autojump_clock):
    app, broker, seen = make_app()
    async with open_client(app) as client:
        assert broker.listener is not None
        broker.listener(BrokerState.DISCONNECTED)
        await client.expect_no_message()
        await trio.sleep(0.1)
    assert seen == [BrokerState.DISCONNECTED]


def test_hook_must_be_async():
    app = App()
    with pytest.raises(RegistrationError, match="must be an async function"):

        @app.on_broker_state
        def sync_hook(state: BrokerState) -> None: ...


async def test_connection_whose_topics_cannot_be_subscribed_closes_with_1013(autojump_clock):
    from wsroute import BrokerError
    from wsroute.testing import CloseInfo

    class DeafBroker(MemoryBroker):
        def connect(self, *, on_state: StateListener | None = None) -> Any:
            manager = super().connect(on_state=on_state)

            class Deaf:
                async def __aenter__(self) -> Any:
                    session = await manager.__aenter__()

                    async def subscribe(topics: Any) -> None:
                        raise BrokerError("broker is down")

                    session.subscribe = session.subscribe_many = subscribe  # type: ignore[method-assign]
                    return session

                async def __aexit__(self, *exc: object) -> None:
                    await manager.__aexit__(*exc)

            return Deaf()

    app = App(broker=DeafBroker())
    async with open_client(app) as client:
        assert await client.wait_closed() == CloseInfo(1013, "broker unavailable")
