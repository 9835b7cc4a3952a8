"""A private Redis Cluster for the cluster broker's tests and benchmarks.

``running_cluster(masters, replicas)`` starts ``masters * (1 + replicas)`` redis-server
processes (tests/redisproc.py finds the binary and runs each one) with cluster mode on,
persistence off and a temp directory each, then wires them with plain commands:
``CLUSTER ADDSLOTSRANGE`` on the masters, ``CLUSTER MEET``, ``CLUSTER REPLICATE``. It
does not use ``redis-cli --cluster create``, which asks for confirmation and may be
absent. Both the client port and the cluster bus port are chosen free (``cluster-port``,
Redis 7), so a high client port never pushes the bus port past 65535.

Sharded pub/sub needs Redis 7: an older binary skips the test (fails under CI).

The helpers here are blocking (socket calls), as fixtures are; a trio test calls the
slow ones (``migrate_slot``, ``failover``) through ``trio.to_thread.run_sync``. Every
wait is bounded.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

import pytest

from .needs import missing
from .redisproc import RedisServer, RedisStartError, free_port, require_redis_server, server_version

#: Hash slots of a Redis Cluster.
SLOTS = 16384
#: Seconds the cluster may take to agree on its shape after the commands above.
FORM_TIMEOUT = 20.0
#: Milliseconds before a silent node counts as failing (Redis default: 15000). Low, so
#: that automatic failover in tests takes about a second, not fifteen.
NODE_TIMEOUT_MS = 1000


class TLSFiles(NamedTuple):
    """A certificate (also the CA the nodes trust) and its key, as PEM file paths."""

    cert: str
    key: str


class ClusterError(RuntimeError):
    """A node answered a command with an error reply."""


def _encode(args: tuple[Any, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _parse(reader: Any) -> Any:
    """One RESP2 reply from a binary file ``reader``; error replies raise ClusterError."""
    line = reader.readline()
    if not line:
        raise ConnectionError("the node closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ClusterError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data: bytes = reader.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_parse(reader) for _ in range(count)]
    raise ClusterError(f"unexpected reply {line!r}")


def command(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """Send one command to the node on ``port`` and return its decoded reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        with sock.makefile("rb") as reader:
            return _parse(reader)


def asking(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """Send one command to the node on ``port`` right after ``ASKING``, on the same
    connection (as a node importing a slot serves it), and return its decoded reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_encode(("ASKING",)) + _encode(args))
        with sock.makefile("rb") as reader:
            _parse(reader)
            return _parse(reader)


class ClusterNode(RedisServer):
    """One cluster-mode redis-server; it keeps its node id across a restart (its
    ``nodes.conf`` lives in its own directory)."""

    def __init__(
        self, binary: str, directory: str, node_timeout_ms: int, tls: TLSFiles | None = None
    ) -> None:
        self.directory = directory
        self.bus_port = free_port()
        #: The TLS port (``tls``): clients, the bus and replication then speak TLS; the
        #: plain port stays for the helpers here.
        self.tls_port = free_port() if tls is not None else None
        tls_args = []
        if tls is not None:
            tls_args = ["--tls-port", str(self.tls_port), "--tls-cert-file", tls.cert]
            tls_args += ["--tls-key-file", tls.key, "--tls-ca-cert-file", tls.cert]
            tls_args += ["--tls-auth-clients", "no", "--tls-cluster", "yes"]
            tls_args += ["--tls-replication", "yes"]
        super().__init__(
            binary,
            args=[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(self.bus_port),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--dir",
                directory,
                # A replica syncs at once (not after the default 5 s wait for others),
                # so that it is ready to take over as soon as the cluster is formed.
                "--repl-diskless-sync-delay",
                "0",
                *tls_args,
            ],
        )
        self.node_id = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self, *args: Any) -> Any:
        return command(self.port, *args)

    def asking(self, *args: Any) -> Any:
        return asking(self.port, *args)

    def info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict."""
        text: str = self.command("CLUSTER", "INFO")
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def role(self) -> str:
        """``master`` or ``slave``, as the node itself says."""
        reply: list[Any] = self.command("ROLE")
        return str(reply[0])

    def __repr__(self) -> str:
        return f"<ClusterNode :{self.port} {self.node_id[:8]}>"


class RedisCluster:
    """The running nodes of one local cluster, and the moves tests make on it."""

    def __init__(self, nodes: list[ClusterNode], more: Any = None) -> None:
        self.nodes = nodes
        #: Starts one more node (``add_master``); given by ``running_cluster``.
        self._more = more

    def add_master(self, timeout: float = FORM_TIMEOUT) -> ClusterNode:
        """Start one more node and wait until every node knows it as a master without
        slots (``migrate_slot`` gives it some). It is stopped with the others."""
        node: ClusterNode = self._more()
        node.node_id = node.command("CLUSTER", "MYID")
        self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while not all(self._knows_all(n) for n in self.live()):
            if time.monotonic() > deadline:
                raise ClusterError(f"{node} did not join within {timeout:g} s")
            time.sleep(0.02)
        return node

    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`` with every node as a seed;
        ``rediss+cluster://`` and the TLS ports for a cluster started with ``tls``."""
        if self.nodes[0].tls_port is not None:
            seeds = ",".join(f"127.0.0.1:{n.tls_port}" for n in self.nodes)
            return f"rediss+cluster://{seeds}"
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def node(self, node_id: str) -> ClusterNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    def slot_map(self) -> dict[int, ClusterNode]:
        """The first slot of each range and its owner, from ``CLUSTER SLOTS`` of a
        live node."""
        last: Exception | None = None
        for seed in self.live():
            try:
                ranges: list[list[Any]] = seed.command("CLUSTER", "SLOTS")
            except (OSError, ClusterError) as exc:
                last = exc
                continue
            ports = {n.port: n for n in self.nodes}
            return {int(r[0]): ports[int(r[2][1])] for r in ranges}
        raise ClusterError(f"no live node answers CLUSTER SLOTS: {last}")

    def owner_of(self, slot: int) -> ClusterNode:
        """The master that serves ``slot`` now."""
        last: Exception | None = None
        for seed in self.live():
            try:
                ranges: list[list[Any]] = seed.command("CLUSTER", "SLOTS")
            except (OSError, ClusterError) as exc:
                last = exc
                continue
            for start, end, master, *_ in ranges:
                if int(start) <= slot <= int(end):
                    return next(n for n in self.nodes if n.port == int(master[1]))
            raise ClusterError(f"no node serves slot {slot}")
        raise ClusterError(f"no live node answers CLUSTER SLOTS: {last}")

    def masters(self) -> list[ClusterNode]:
        """The live nodes that are masters now (after a failover, a promoted replica)."""
        return [node for node in self.live() if node.role() == "master"]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        """The live nodes replicating ``master``."""
        found = []
        for node in self.live():
            if node is master:
                continue
            reply: list[Any] = node.command("ROLE")
            if reply[0] == "slave" and int(reply[2]) == master.port:
                found.append(node)
        return found

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL one node, as in a crash. ``node.astart()`` brings it back with its id."""
        node.kill()

    def _knows_all(self, node: ClusterNode) -> bool:
        lines: str = node.command("CLUSTER", "NODES")
        return all(other.node_id in lines for other in self.nodes)

    def failover(self, replica: ClusterNode, timeout: float = FORM_TIMEOUT) -> None:
        """Promote ``replica`` now (``CLUSTER FAILOVER TAKEOVER``: no vote, works while
        its master is dead) and wait until the live nodes agree on it."""
        replica.command("CLUSTER", "FAILOVER", "TAKEOVER")
        deadline = time.monotonic() + timeout
        while replica.role() != "master" or not self._agrees(replica):
            if time.monotonic() > deadline:
                views = [
                    line
                    for node in self.live()
                    for line in node.command("CLUSTER", "NODES").splitlines()
                    if line.startswith(replica.node_id)
                ]
                raise ClusterError(
                    f"{replica} not promoted within {timeout:g} s: ROLE"
                    f" {replica.command('ROLE')!r}; seen as {views}"
                )
            time.sleep(0.02)

    def _agrees(self, master: ClusterNode) -> bool:
        """Every live node sees ``master`` as a master that serves slots."""
        for node in self.live():
            lines: str = node.command("CLUSTER", "NODES")
            mine = next((ln for ln in lines.splitlines() if ln.startswith(master.node_id)), "")
            fields = mine.split()
            if len(fields) < 9 or "master" not in fields[2]:
                return False
        return True

    def migrate_slot(self, slot: int, to: ClusterNode, timeout: float = FORM_TIMEOUT) -> None:
        """Move ``slot`` and its keys to master ``to`` the way redis-cli does:
        IMPORTING/MIGRATING, MIGRATE key batches, then SETSLOT NODE everywhere."""
        source = self.owner_of(slot)
        if source is to:
            return
        self.start_migration(slot, source, to)
        deadline = time.monotonic() + timeout
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            if time.monotonic() > deadline:
                raise ClusterError(f"slot {slot} still has keys after {timeout:g} s")
            self.move_keys(source, to, *keys)
        self.finish_migration(slot, source, to, timeout)

    def start_migration(self, slot: int, source: ClusterNode, to: ClusterNode) -> None:
        """Mark ``slot`` IMPORTING on ``to`` and MIGRATING on ``source``, its owner."""
        to.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", to.node_id)

    def move_keys(self, source: ClusterNode, to: ClusterNode, *keys: str) -> None:
        """``MIGRATE`` ``keys`` from ``source`` to ``to`` in one batch."""
        source.command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)

    def finish_migration(
        self, slot: int, source: ClusterNode, to: ClusterNode, timeout: float = FORM_TIMEOUT
    ) -> None:
        """Give ``slot`` to ``to`` everywhere (its keys moved) and wait until it is so."""
        # The new owner first, so that it never refuses what the old one redirects to it.
        to.command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
        for node in self.masters():
            if node not in (source, to):
                node.command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
        deadline = time.monotonic() + timeout
        while self.owner_of(slot) is not to:
            if time.monotonic() > deadline:
                raise ClusterError(f"slot {slot} not moved to {to} within {timeout:g} s")
            time.sleep(0.02)

    def wait_ok(self, timeout: float = FORM_TIMEOUT) -> None:
        """Wait until every live node says ``cluster_state:ok``, knows every node and
        sees the same slot owners."""
        deadline = time.monotonic() + timeout
        while (why := self._not_ok()) is not None:
            if time.monotonic() > deadline:
                raise ClusterError(f"the cluster did not form within {timeout:g} s: {why}")
            time.sleep(0.05)

    def _not_ok(self) -> str | None:
        views = set()
        for node in self.live():
            try:
                info = node.info()
                ranges: list[list[Any]] = node.command("CLUSTER", "SLOTS")
            except (OSError, ClusterError) as exc:
                return f"{node}: {exc}"
            if info.get("cluster_state") != "ok":
                return f"{node} says cluster_state:{info.get('cluster_state')}"
            if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                return f"{node} knows {info.get('cluster_known_nodes')} of {len(self.nodes)}"
            # (first slot, last slot, master port, replica count) per range
            views.add(
                tuple(sorted((int(r[0]), int(r[1]), int(r[2][1]), len(r) - 3) for r in ranges))
            )
            if node.role() == "slave":
                replication: str = node.command("INFO", "replication")
                if "master_link_status:up" not in replication:
                    return f"{node} has not synced with its master yet"
        if len(views) > 1:
            return "the nodes disagree about slot owners or replicas"
        return None

    def _form(self, masters: int, replicas: int) -> None:
        for epoch, node in enumerate(self.nodes, 1):
            node.node_id = node.command("CLUSTER", "MYID")
            # Distinct epochs now, as redis-cli gives them: with the collisions left to
            # gossip, a quick TAKEOVER may claim slots with an epoch no greater than
            # its dead master's, and the others never accept it.
            node.command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        chiefs = self.nodes[:masters]
        for index, node in enumerate(chiefs):
            first, last = index * SLOTS // masters, (index + 1) * SLOTS // masters - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        deadline = time.monotonic() + FORM_TIMEOUT
        for node in self.nodes[masters:]:
            while len(node.command("CLUSTER", "NODES").splitlines()) < len(self.nodes):
                if time.monotonic() > deadline:
                    raise ClusterError(f"{node} did not meet the others")
                time.sleep(0.02)
        for index, node in enumerate(self.nodes[masters:]):
            master = chiefs[index // replicas]
            while True:  # a replica may hear of its master before knowing it is one
                try:
                    node.command("CLUSTER", "REPLICATE", master.node_id)
                    break
                except ClusterError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        self.wait_ok()


def _redis_7() -> str:
    binary = require_redis_server()
    version = server_version(binary)
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 7:
        missing(f"sharded pub/sub needs redis-server 7 or later, {binary} is {version}")
    return binary


@contextmanager
def running_cluster(
    masters: int = 3,
    replicas: int = 0,
    *,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    tls: TLSFiles | None = None,
) -> Iterator[RedisCluster]:
    """A formed cluster of ``masters`` masters with ``replicas`` replicas each (with
    TLS ports too, given ``tls``); every node is killed and its directory removed on
    exit."""
    binary = _redis_7()
    with ExitStack() as stack:

        def start_node() -> ClusterNode:
            directory = tempfile.mkdtemp(prefix="wsroute-cluster-")
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            for attempt in range(3):  # a free port may be taken between choice and bind
                node = ClusterNode(binary, directory, node_timeout_ms, tls)
                try:
                    node.start()
                except RedisStartError as exc:
                    node.close()
                    if exc.refused_option and tls is not None:
                        missing(f"this redis-server cannot do TLS: {exc}")
                    if not exc.port_taken or attempt == 2:
                        raise
                    continue
                stack.callback(node.close)
                return node
            raise AssertionError("unreachable")

        nodes = [start_node() for _ in range(masters * (1 + replicas))]
        cluster = RedisCluster(nodes, start_node)
        cluster._form(masters, replicas)
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One 3-master cluster for every test that leaves its shape alone."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def own_redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master cluster with one replica each, for one test that may kill nodes,
    fail over or move slots."""
    with running_cluster(replicas=1) as cluster:
        yield cluster
