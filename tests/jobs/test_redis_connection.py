"""How Redis clients are made: one host from REDIS_URL, or the primary Sentinel names (the failover itself:
tests/faults/test_sentinel_failover.py)."""

from __future__ import annotations

import pytest
from channels_redis.utils import create_pool
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.sentinel import SentinelConnectionPool

from jobs.core.redis_connection import channel_layer_host, connect_redis, parse_sentinels


def test_sentinel_addresses_are_read_as_host_port_pairs():
    assert parse_sentinels(" 10.0.0.5:26379, sentinel-b:26380 ,") == [("10.0.0.5", 26379), ("sentinel-b", 26380)]
    assert parse_sentinels("") == []


def test_a_sentinel_address_without_a_port_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        parse_sentinels("10.0.0.5")


def test_without_sentinels_a_client_connects_to_the_url_host(settings):
    settings.REDIS_SENTINELS = []
    client = connect_redis("redis://:secret@10.1.2.3:6380/4", socket_timeout=1)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("10.1.2.3", 6380, 4, "secret")
    assert kwargs["socket_timeout"] == 1


def test_with_sentinels_a_client_asks_them_for_the_primary_and_keeps_the_url_db_and_password(settings):
    settings.REDIS_SENTINELS = [("10.0.0.5", 26379), ("10.0.0.6", 26379)]
    settings.REDIS_SENTINEL_MASTER = "conveyor"
    settings.REDIS_SENTINEL_PASSWORD = "sentinel-secret"
    client = connect_redis("redis://:secret@ignored-host:6379/4", socket_timeout=1)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "conveyor"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (4, "secret", 1)
    assert "host" not in kwargs
    assert kwargs["retry"].get_retries() > 0  # a command survives a short failover
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26379]
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"sentinel-secret"}


def test_the_channel_layer_host_is_the_url_or_a_sentinel_entry():
    assert channel_layer_host("redis://h:6379/2", [], "") == "redis://h:6379/2"
    host = channel_layer_host("redis://:secret@h:6379/2", [("s", 26379)], "conveyor", "sentinel-secret")
    assert isinstance(host, dict)
    assert (host["master_name"], host["sentinels"], host["db"], host["password"]) == (
        "conveyor",
        [("s", 26379)],
        2,
        "secret",
    )
    assert host["sentinel_kwargs"]["password"] == "sentinel-secret"
    assert "host" not in host and "address" not in host
    # channels_redis builds its asyncio Sentinel pool from the entry
    pool = create_pool(host)
    assert isinstance(pool, AsyncSentinelConnectionPool)
    assert pool.service_name == "conveyor"
