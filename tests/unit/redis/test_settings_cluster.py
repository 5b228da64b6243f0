"""REDIS_MODE and PARTITIONS: defaults, parsing, and what cluster mode refuses."""

from __future__ import annotations

import pytest

from printery.errors import ConfigError
from printery.settings import load_settings


def test_defaults_are_standalone_and_twelve_partitions() -> None:
    """Unset, REDIS_MODE is standalone and PARTITIONS 12, as the README says."""
    settings = load_settings({}, {})
    assert ("standalone", 12, False) == (settings.redis_mode, settings.partitions, settings.cluster)


@pytest.mark.parametrize("raw", ["cluster", "CLUSTER", " Cluster "])
def test_cluster_mode_is_read_in_any_case(raw: str) -> None:
    """REDIS_MODE=cluster in any case turns cluster mode on."""
    settings = load_settings({}, {"REDIS_MODE": raw, "PARTITIONS": "6"})
    assert (True, 6) == (settings.cluster, settings.partitions)


@pytest.mark.parametrize(
    ("env", "setting", "says"),
    [
        ({"REDIS_MODE": "sentinel"}, "REDIS_MODE", "'standalone' or 'cluster'"),
        ({"PARTITIONS": "0"}, "PARTITIONS", "greater than or equal to 1"),
        ({"PARTITIONS": "257"}, "PARTITIONS", "less than or equal to 256"),
        ({"PARTITIONS": "many"}, "PARTITIONS", "valid integer"),
        (
            {"REDIS_MODE": "cluster", "REDIS_URL": "redis://h:6379/3"},
            "REDIS_URL",
            "names database 3, but with REDIS_MODE=cluster only database 0 exists",
        ),
        (
            {"REDIS_MODE": "cluster", "REDIS_URL": "redis://h:6379?db=2"},
            "REDIS_URL",
            "names database 2",
        ),
        (
            {"REDIS_MODE": "cluster", "REDIS_URL": "unix:///run/redis.sock"},
            "REDIS_URL",
            "must be redis:// or rediss:// with REDIS_MODE=cluster",
        ),
    ],
)
def test_bad_cluster_settings_are_refused_by_name(
    env: dict[str, str], setting: str, says: str
) -> None:
    """Each bad value is one ConfigError naming its setting and saying why."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, env)
    assert setting == caught.value.setting
    assert says in caught.value.reason


def test_database_index_is_free_in_standalone_mode() -> None:
    """Standalone mode keeps accepting any database index."""
    assert "redis://h:6379/3" == load_settings({}, {"REDIS_URL": "redis://h:6379/3"}).redis_url


def test_cluster_url_without_database_is_database_zero() -> None:
    """A cluster URL with no path, or /0, is accepted."""
    for url in ("redis://h:7000", "redis://h:7000/", "rediss://u:p@h:7000/0"):
        assert url == load_settings({}, {"REDIS_MODE": "cluster", "REDIS_URL": url}).redis_url
