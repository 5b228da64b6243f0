"""What a handler may return as its outputs, and the errors that name what it got wrong."""

from __future__ import annotations

import collections
from enum import StrEnum
from typing import Any

import pytest

from printery.redis.writes import Write, outputs_problem

pytestmark = pytest.mark.timeout(10)

GOOD = Write.xadd("s", {"a": "1"})


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        ([GOOD, Write.expire("k", 60)], None),
        ((GOOD,), None),
        ([], None),
        (collections.deque([GOOD]), None),
        ("XADD", "handler returned str, not a list of Write"),
        ((w for w in [GOOD]), "handler returned generator, not a list of Write"),
        (None, "handler returned NoneType, not a list of Write"),
        (GOOD, "handler returned Write, not a list of Write"),
        ({"a": "1"}, "handler returned dict, not a list of Write"),
        ([GOOD, ("XADD", "s", ())], "handler returned a tuple among its outputs, not a Write"),
        ([None], "handler returned a NoneType among its outputs, not a Write"),
    ],
)
def test_outputs_problem_names_what_the_handler_returned(
    returned: Any, problem: str | None
) -> None:
    assert outputs_problem(returned) == problem


class Colour(StrEnum):
    RED = "red"


def test_field_values_may_be_text_bytes_or_whole_numbers() -> None:
    """Whole numbers become their digits; str subclasses stay text."""
    write = Write.xadd("s", {"n": 2**64, "b": b"\xff", "c": Colour.RED})
    assert write.args == ("n", str(2**64), "b", b"\xff", "c", "red")


@pytest.mark.parametrize("value", [None, True, 1.5, ["a"], {"a": 1}])
def test_a_field_value_redis_cannot_take_raises_in_the_handler(value: object) -> None:
    with pytest.raises(TypeError, match=r"output field 'f' = .*: values are str or bytes"):
        Write.hset("h", {"f": value})  # type: ignore[dict-item]
