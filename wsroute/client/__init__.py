"""The official Python client for wsroute servers (trio).

::

    async with wsroute.client.connect("ws://127.0.0.1:8000/", token="...") as client:
        items = await client.request("list_items")
        async for event in client.events("create_item"):
            ...

It reconnects by itself, makes ``replay=True`` requests again, and resumes topics
with history: the events missed meanwhile come first, then a ``wsroute.recovery``
event (``connect(recover=...)``). See docs/clients.md.
"""

from __future__ import annotations

from .._errors import ClientClosed as ClientClosed
from .._errors import ClientError as ClientError
from .._errors import ClientHandlerError as ClientHandlerError
from .._errors import ConnectError as ConnectError
from .._errors import Disconnected as Disconnected
from .._errors import EventsLost as EventsLost
from .._errors import InvalidReply as InvalidReply
from .._errors import RequestTimeout as RequestTimeout
from ._backoff import RETRY_CODES as RETRY_CODES
from ._backoff import RETRY_STATUSES as RETRY_STATUSES
from ._backoff import Backoff as Backoff
from ._client import Client as Client
from ._connect import connect as connect
from ._events import Event as Event
from ._replays import Replayed as Replayed
from ._state import State as State
from ._state import StateChange as StateChange
from ._streams import Overflow as Overflow
from ._streams import Stream as Stream

__all__ = [
    "RETRY_CODES",
    "RETRY_STATUSES",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientHandlerError",
    "ConnectError",
    "Disconnected",
    "Event",
    "EventsLost",
    "InvalidReply",
    "Overflow",
    "Replayed",
    "RequestTimeout",
    "State",
    "StateChange",
    "Stream",
    "connect",
]
