"""Plain-text tables and short durations for the ``printery`` command's terminal output."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["format_duration", "parse_duration", "render_table", "shorten"]

_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, headers first; no trailing spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]


def format_duration(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``2h10m``, ``4d3h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``2h``, ``7d`` (a number and one unit) in seconds; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(
            f"expected a number and a unit (s, m, h, d), like 15m or 7d (got {text!r})"
        )
    return float(match["n"]) * _UNIT_S[match["unit"]]


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters, with ``…`` where it was cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
