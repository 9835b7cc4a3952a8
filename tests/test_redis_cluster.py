"""The Redis Cluster broker (``wsroute.brokers.redis.cluster``): its URL and options, and
on a real local cluster the conformance suite, where topics and their history live,
and what it says when the cluster cannot be reached. Presence on the cluster:
tests/test_redis_present_sharded.py."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from wsroute import BrokerError
from wsroute.brokers import History, RedisClusterBroker, from_url
from wsroute.brokers.redis.slots import Address, key_slot
from wsroute.testing import broker_checks

from .cliproc import assert_one_line_error, write, wsroute_cli
from .needs import missing
from .rediscluster import RedisCluster, TLSFiles, redis_cluster, running_cluster
from .redisproc import free_port

__all__ = ["redis_cluster"]

# -- the URL and options ---------------------------------------------------------------


def test_seeds_credentials_and_options_from_the_url() -> None:
    broker = from_url(
        "redis+cluster://app:s%40cret@10.0.0.1:7000,cache.internal,[::1]:7002/0"
        "?prefix=shop:&give_up_after=30"
    )
    assert isinstance(broker, RedisClusterBroker)
    assert broker.seeds == [
        Address("10.0.0.1", 7000),
        Address("cache.internal", 6379),
        Address("::1", 7002),
    ]
    assert (broker.prefix, broker.give_up_after) == ("shop:", 30.0)
    assert broker._username == "app" and broker._password == "s@cret"
    assert broker.describe() == "redis+cluster://10.0.0.1:7000,cache.internal:6379,[::1]:7002"
    assert broker._ssl_context is None


def test_rediss_cluster_uses_tls_with_the_system_cas() -> None:
    broker = RedisClusterBroker("rediss+cluster://:pw@node:7000")
    assert isinstance(broker._ssl_context, ssl.SSLContext)
    assert broker._password == "pw" and broker._username is None
    assert broker._ssl_context.check_hostname


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:1", "starts with redis\\+cluster:// or rediss\\+cluster://"),
        ("redis+cluster://", "no seed node"),
        ("redis+cluster://h:1,,h:2", "empty seed ''"),
        ("redis+cluster://h:70000", "invalid port in seed 'h:70000'"),
        ("redis+cluster://h:x", "invalid port in seed 'h:x'"),
        ("redis+cluster://[::1]x", "invalid seed"),
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1?prefix=x", "need RedisClusterBroker.from_url"),
    ],
)
def test_bad_urls_are_refused_saying_why(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisClusterBroker(url)


def test_options_are_checked_as_for_one_redis() -> None:
    with pytest.raises(ValueError, match="unknown Redis broker option 'shards'"):
        from_url("redis+cluster://h:1?shards=3")
    with pytest.raises(ValueError, match="timeout must be positive"):
        RedisClusterBroker("redis+cluster://h:1", timeout=0)


async def test_a_bad_cluster_url_exits_2(tmp_path: Path) -> None:
    app_dir = write(tmp_path, {"app.py": "from wsroute import App\napp = App()\n"})
    result = await wsroute_cli(
        "run", "app:app", "--broker", "redis+cluster://h:1?bogus=1", cwd=app_dir
    )
    assert_one_line_error(result, 2, "unknown Redis broker option 'bogus'")


# -- on a cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("check", list(broker_checks()))
async def test_conformance(check: str, redis_cluster: RedisCluster) -> None:
    await broker_checks()[check](lambda: RedisClusterBroker(redis_cluster.url()))


async def test_subscribe_many_sends_one_ssubscribe_per_slot(redis_cluster: RedisCluster) -> None:
    topics = [f"many-{n}" for n in range(12)]
    masters = redis_cluster.masters()
    for node in masters:
        node.command("CONFIG", "RESETSTAT")
    async with RedisClusterBroker(redis_cluster.url()).connect() as session:
        await session.subscribe_many(topics)
        calls = 0
        for node in masters:
            stats = node.command("INFO", "commandstats")
            line = next(
                (ln for ln in stats.splitlines() if ln.startswith("cmdstat_ssubscribe")), ""
            )
            calls += int(line.split("calls=")[1].split(",")[0]) if line else 0
        assert calls == len({key_slot(topic.encode()) for topic in topics})
        for topic in topics:
            owner = redis_cluster.owner_of(key_slot(topic.encode()))
            channel = f"wsroute:{{{topic}}}"
            assert owner.command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1


async def test_a_topics_history_lives_on_its_shard(redis_cluster: RedisCluster) -> None:
    async with RedisClusterBroker(redis_cluster.url()).connect() as session:
        await session.subscribe("kept")
        position = await session.publish_kept("kept", b"one", History(size=10, ttl=60))
        with trio.fail_after(5):
            message = await session.__anext__()
        assert (message.data, message.position) == (b"one", position)
    owner = redis_cluster.owner_of(key_slot(b"kept"))
    assert owner.command("EXISTS", "wsroute:{kept}:s", "wsroute:{kept}:m") == 2


async def test_an_unreachable_cluster_fails_fast_naming_each_seed() -> None:
    ports = free_port(), free_port()
    url = f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    with trio.fail_after(5), pytest.raises(BrokerError) as info:
        async with RedisClusterBroker(url).connect():
            pass
    text = str(info.value)
    assert text.startswith(f"cannot connect to Redis at {url}: no seed node told")
    assert all(f"127.0.0.1:{port}: " in text for port in ports)


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[RedisCluster, Path]]:
    """A 3-master cluster whose clients, bus and replication speak TLS, and the
    certificate it presents. Sync, so that a missing capability skips saying why."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x"]
    request += ["-keyout", str(key), "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run([openssl, *request], check=True, capture_output=True, timeout=30)
    with running_cluster(tls=TLSFiles(str(cert), str(key))) as cluster:
        yield cluster, cert


async def test_rediss_cluster_speaks_tls_to_every_shard(
    tls_cluster: tuple[RedisCluster, Path],
) -> None:
    cluster, cert = tls_cluster
    trusting = ssl.create_default_context(cafile=str(cert))
    topics = [f"tls-{n}" for n in range(12)]
    assert len({cluster.owner_of(key_slot(t.encode())) for t in topics}) == 3
    broker = RedisClusterBroker(cluster.url(), ssl_context=trusting)
    async with broker.connect() as session:
        await session.subscribe_many(topics)
        for topic in topics:
            await session.publish(topic, topic.encode())
        with trio.fail_after(5):
            got = {(await session.__anext__()).data for _ in topics}
        assert got == {topic.encode() for topic in topics}
    # The default context checks the certificate against the system's CAs.
    with trio.fail_after(5), pytest.raises(BrokerError, match="cannot connect"):
        async with RedisClusterBroker(cluster.url()).connect():
            pass


async def test_a_hung_seed_delays_the_start_by_a_moment_only(redis_cluster: RedisCluster) -> None:
    # A listener that never answers, as a frozen host: the next seed is asked too
    # after topology.SEED_STAGGER, rather than after the 5 s timeout.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        url = redis_cluster.url().replace("://", f"://127.0.0.1:{port},", 1)
        started = trio.current_time()
        async with RedisClusterBroker(url, timeout=5).connect() as session:
            assert trio.current_time() - started < 2
            await session.subscribe("t")
    finally:
        for listener in listeners:
            await listener.aclose()
