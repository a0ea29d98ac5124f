"""Store settings that need no server: store_sync's forms (group commit), the
store_backend choice and Redis addresses."""

import pytest

from qpsmtpd_py.config import ConfigError
from qpsmtpd_py.helpers.store import Store, _sync, make_store
from qpsmtpd_py.helpers.store_redis import RedisStore, parse_address

pytestmark = pytest.mark.no_services


class FakeConfig(dict):
    def get(self, name, default=None):
        return super().get(name, default)


def test_store_sync_forms():
    assert _sync(None) is True and _sync("yes") is True and _sync("0") is False
    assert _sync("1s") == 1.0 and _sync("0.5s") == 0.5
    with pytest.raises(ConfigError, match="store_sync: 'sometimes'"):
        _sync("sometimes")


def test_group_commit_store_writes_and_syncs(tmp_path):
    store = Store(str(tmp_path / "s"), sync=0.5)
    table = store.table("t")
    for n in range(20):
        table.incr("n")
    assert table.get("n") == b"20" and store.sync_every == 0.5
    store.close()


def test_backend_choice_and_redis_addresses(tmp_path):
    assert make_store(FakeConfig(store_dir=str(tmp_path))).backend == "lmdb"
    store = make_store(FakeConfig(store_backend="redis", store_redis="10.0.0.5:6380/2",
                                  store_redis_prefix="mx:"))
    assert isinstance(store, RedisStore) and store.params == {"host": "10.0.0.5", "port": 6380, "db": 2}
    assert store.prefix == b"mx:"
    assert parse_address("redis://[::1]:7000/1") == {"host": "::1", "port": 7000, "db": 1}
    assert parse_address("unix:/run/redis.sock?db=3") == {"unix_socket_path": "/run/redis.sock", "db": 3}
    with pytest.raises(ConfigError, match="store_backend: 'memcached'"):
        make_store(FakeConfig(store_backend="memcached"))
