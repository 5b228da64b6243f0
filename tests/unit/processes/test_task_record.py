"""The task record's writes: the record and its expiry, and the log's only when it may exist."""

from __future__ import annotations

import pytest

from printery.processes.task import line_writes, record_writes
from printery.redis.keys import Keys

pytestmark = pytest.mark.timeout(10)


def test_a_record_renews_the_log_expiry_only_when_a_log_may_be_kept() -> None:
    """With ``log=False`` the writes are the HSET and its EXPIRE; by default the log's too."""
    keys = Keys("p")
    quiet = record_writes(keys, "e1", {"status": "succeeded"}, 60, log=False)
    assert [(w.op, w.key) for w in quiet] == [("HSET", "p:task:e1"), ("EXPIRE", "p:task:e1")]
    talkative = record_writes(keys, "e1", {"status": "succeeded"}, 60)
    assert [(w.op, w.key) for w in talkative] == [
        ("HSET", "p:task:e1"),
        ("EXPIRE", "p:task:e1"),
        ("EXPIRE", "p:task:e1:log"),
    ]


def test_a_progress_line_pushes_to_the_log_and_renews_both_expiries() -> None:
    """A progress line writes the log entry, the record's percent, and both keys' EXPIRE."""
    writes = line_writes(Keys("p"), "e1", {"op": "progress", "percent": 50}, 60, worker="w")
    ops = [(w.op, w.key) for w in writes]
    assert ops[0] == ("RPUSH", "p:task:e1:log")
    assert ("EXPIRE", "p:task:e1:log") in ops
    assert ("EXPIRE", "p:task:e1") in ops
