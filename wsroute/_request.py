"""What the client asked for in its upgrade request: path, query, headers, address,
scheme."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, urlsplit

import attrs


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive HTTP headers.

    ``headers["X-Token"]`` and ``headers.get("x-token")`` give the first value;
    ``getall`` gives every value of a repeated header.
    """

    __slots__ = ("_decoded", "_raw")

    def __init__(self, items: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        # Decoded on first use: most connections never look at their headers, and
        # every connection pays for the upgrade.
        self._raw = items if isinstance(items, list | tuple) else tuple(items)
        self._decoded: tuple[tuple[str, str], ...] | None = None

    @property
    def _items(self) -> tuple[tuple[str, str], ...]:
        if self._decoded is None:
            self._decoded = tuple((_text(name).lower(), _text(value)) for name, value in self._raw)
            self._raw = ()
        return self._decoded

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        for item_name, value in self._items:
            if item_name == key:
                return value
        raise KeyError(name)

    def getall(self, name: str) -> list[str]:
        key = name.lower()
        return [value for item_name, value in self._items if item_name == key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._items))

    def __len__(self) -> int:
        return len({name for name, _ in self._items})

    def items_all(self) -> tuple[tuple[str, str], ...]:
        """Every ``(lowercase name, value)`` pair in the order received."""
        return self._items

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


@attrs.frozen
class Request:
    """The WebSocket upgrade request of a connection.

    Attributes:
        path: the request path without its query string, e.g. ``"/ws"``.
        query: the query parameters; a repeated key keeps its first value.
        query_items: every ``(key, value)`` pair of the query string, in order.
        headers: case-insensitive request headers.
        remote: the client's ``(host, port)``, or ``None`` when unknown.
        subprotocols: the subprotocols the client proposed, in its order.
        scheme: ``"wss"`` when the client's connection is TLS, else ``"ws"``: the
            listener's own, or behind a trusted proxy the one the proxy forwards
            (``X-Forwarded-Proto``, ``Forwarded: proto=``; docs/deployment.md).
    """

    path: str
    query: Mapping[str, str]
    query_items: tuple[tuple[str, str], ...]
    headers: Headers
    remote: tuple[str, int] | None = None
    subprotocols: tuple[str, ...] = ()
    scheme: str = "ws"

    @classmethod
    def build(
        cls,
        target: str,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        *,
        remote: tuple[str, int] | None = None,
        subprotocols: Iterable[str] = (),
        scheme: str = "ws",
    ) -> Request:
        """Build from a raw request target such as ``"/ws?room=1&token=x"``."""
        query: dict[str, str] = {}
        items: tuple[tuple[str, str], ...] = ()
        if target[:1] == "/" and target[1:2] != "/" and "?" not in target and "#" not in target:
            path = target  # the usual target: nothing to parse
        else:
            parts = urlsplit(target)
            path = parts.path or "/"
            items = tuple(parse_qsl(parts.query, keep_blank_values=True))
            for key, value in items:
                query.setdefault(key, value)
        return cls(
            path=path,
            query=query,
            query_items=items,
            headers=Headers(headers),
            remote=remote,
            subprotocols=tuple(subprotocols),
            scheme=scheme,
        )
