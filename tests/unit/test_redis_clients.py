"""The one Redis client factory: URL forms, kombu's broker options, and that nothing else
in the shipped code builds a Redis client (so no client can quietly ignore Sentinel)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
import redis
import redis.asyncio
from kombu import Connection

from dispatcher.redis_clients import (
    SentinelTarget,
    async_client,
    celery_broker,
    is_sentinel,
    parse_sentinel_url,
    sync_client,
)

ROOT = Path(__file__).resolve().parents[2]
FACTORY = ROOT / "dispatcher" / "redis_clients.py"
# Every process's code: the API, workers, scheduler, exporter, CLI, `make run`, the simulator and
# Celery's settings.
SHIPPED = [
    ROOT / "dispatcher",
    ROOT / "workers",
    ROOT / "devstack",
    ROOT / "simulator",
    ROOT / "celeryconfig.py",
]
CONSTRUCTORS = {
    "Redis",
    "StrictRedis",
    "Sentinel",
    "ConnectionPool",
    "BlockingConnectionPool",
    "SentinelConnectionPool",
    "from_pool",
    "RedisCluster",
}


def test_full_sentinel_url() -> None:
    t = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2:26380,[::1]:26381/smsd/3"
        "?sentinel_password=s3cret&sentinel_username=watch"
    )
    assert t == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)),
        master="smsd",
        db=3,
        username="app",
        password="p@ss",
        sentinel_username="watch",
        sentinel_password="s3cret",
    )
    assert t.server_kwargs() == {"db": 3, "username": "app", "password": "p@ss"}
    assert t.sentinel_kwargs()["password"] == "s3cret"
    assert t.sentinel_kwargs()["username"] == "watch"


def test_minimal_sentinel_url() -> None:
    t = parse_sentinel_url("redis+sentinel://sentinel-a,sentinel-b:5000/mymaster")
    assert t.sentinels == (("sentinel-a", 26379), ("sentinel-b", 5000))
    assert (t.master, t.db, t.password, t.sentinel_password) == ("mymaster", 0, None, None)
    assert parse_sentinel_url("REDIS+SENTINEL://:pw@h:1/m/0").password == "pw"
    assert is_sentinel("redis+sentinel://h/m") and not is_sentinel("redis://h:6379/0")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://:hunter2@h:26379", "master name is missing"),
        ("redis+sentinel://:hunter2@h:26379/m/x", "database 'x' is not a number"),
        ("redis+sentinel://:hunter2@h:port/m", "port 'port' is not a number"),
        ("redis+sentinel://:hunter2@h:70000/m", "out of range"),
        ("redis+sentinel://:hunter2@h:1,,h:2/m", "empty Sentinel address"),
        ("redis+sentinel://:hunter2@h:1/m/0/extra", "too many path segments"),
        ("redis+sentinel://:hunter2@h:1/m?master=x", "unknown option(s) master"),
        ("redis://:hunter2@h:1/0", "scheme must be redis+sentinel"),
    ],
)
def test_bad_sentinel_urls_name_the_setting_not_the_password(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_sentinel_url(url)
    message = str(err.value)
    assert message.startswith("REDIS_URL: ") and reason in message
    assert "hunter2" not in message


def test_plain_urls_are_redis_py_from_url() -> None:
    client = sync_client("redis://:pw@127.0.0.1:6390/5", socket_timeout=3)
    kw = client.connection_pool.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"], kw["password"], kw["socket_timeout"]) == (
        "127.0.0.1",
        6390,
        5,
        "pw",
        3,
    )
    client.close()
    assert celery_broker("redis://127.0.0.1:6379/0") == ("redis://127.0.0.1:6379/0", {})


def test_sentinel_urls_build_sentinel_managed_clients() -> None:
    url = "redis+sentinel://app:pw@127.0.0.1:1,127.0.0.1:2/smsd/2?sentinel_password=spw"
    client = sync_client(url, socket_timeout=3)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "smsd" and pool.is_master
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["socket_timeout"] == 3
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"spw"}
    client.close()

    aclient = async_client(url)
    apool = aclient.connection_pool
    assert isinstance(apool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert apool.service_name == "smsd" and apool.connection_kwargs["password"] == "pw"
    asyncio.run(aclient.aclose())


def test_celery_broker_for_sentinel_is_what_kombu_needs() -> None:
    broker, options = celery_broker(
        "redis+sentinel://:p%3Aw@127.0.0.1:26379,127.0.0.1:26380/smsd/1?sentinel_password=spw"
    )
    assert broker == ("sentinel://:p%3Aw@127.0.0.1:26379/1;sentinel://:p%3Aw@127.0.0.1:26380/1")
    assert options["master_name"] == "smsd"
    assert options["sentinel_kwargs"]["password"] == "spw"
    # kombu reads it as its Sentinel transport: every Sentinel, the password and the database.
    conn = Connection(broker, transport_options=options)
    assert conn.transport_cls == "sentinel"
    assert conn.alt == [
        "sentinel://:p%3Aw@127.0.0.1:26379/1",
        "sentinel://:p%3Aw@127.0.0.1:26380/1",
    ]
    assert (conn.password, conn.virtual_host) == ("p:w", "1")


def _constructions(path: Path) -> list[str]:
    """Calls that build a Redis client or pool in ``path``'s source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        last = name.rsplit(".", 1)[-1]
        if last in CONSTRUCTORS or (last == "from_url" and "redis" in name.lower()):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    return found


def test_only_the_factory_constructs_redis_clients() -> None:
    files = [p for root in SHIPPED for p in ([root] if root.is_file() else root.rglob("*.py"))]
    assert len(files) > 50, "the scan found the project's sources"
    offenders = [hit for f in files if f != FACTORY for hit in _constructions(f)]
    assert offenders == [], "build Redis clients with dispatcher.redis_clients:\n" + "\n".join(
        offenders
    )
    assert _constructions(FACTORY), "the factory itself is recognised by the scan"


def test_the_scan_catches_each_way_of_building_a_client(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import redis, redis.asyncio\nfrom redis import Redis\n"
        "a = redis.Redis.from_url('redis://x')\nb = Redis(host='x')\n"
        "c = redis.asyncio.from_url('redis://x')\nd = redis.sentinel.Sentinel([])\n"
        "e = redis.ConnectionPool()\n"
    )
    original = ROOT
    try:
        globals()["ROOT"] = tmp_path
        assert len(_constructions(bad)) == 5
    finally:
        globals()["ROOT"] = original
