"""Pages from templates: one Jinja2 environment, escaping on, and the filters the pages share.

Every value from Redis reaches a page through ``{{ … }}`` and is escaped there:
the environment is created with ``autoescape=True`` (Jinja2's own default is
off), and no template marks Redis data ``|safe``. The one exception that makes
markup is :func:`sparkline`, which builds SVG from numbers only.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import jinja2
from aiohttp import web
from markupsafe import Markup

from printery.dashboard.appkeys import IDENTITY, NONCE, READ_ONLY

__all__ = ["TEXT_CAP", "ago", "clip", "env", "page", "pretty", "render"]

TEXT_CAP: Final = 4000  # characters of one field shown before "… N more"
_STATE_CLASS: Final = {
    "running": "ok",
    "succeeded": "ok",
    "healthy": "ok",
    "validated": "ok",
    "satisfied": "ok",
    "delivered": "ok",
    "starting": "busy",
    "restarting": "warn",
    "retrying": "warn",
    "degraded": "warn",
    "stopping": "busy",
    "stopped": "idle",
    "blocked": "warn",
    "logged": "idle",
    "failed": "bad",
    "dead": "bad",
    "rejected": "bad",
    "unhealthy": "bad",
    "stale": "bad",
}


def ago(seconds: object) -> str:
    """``3 s ago``, ``4 min ago``, ``2 h ago``: how long since, the way people say it."""
    span = duration(seconds)
    return "-" if span == "-" else f"{span} ago"


def duration(seconds: object) -> str:
    """``3 s``, ``4 min``, ``2 h 5 min``, ``3 d 4 h``; ``-`` when unknown."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or math.isnan(seconds):
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def since_id(entry_id: str, now_ms: float | None = None) -> float | None:
    """Seconds since a stream entry id's time stamp (its milliseconds part)."""
    try:
        ms = int(entry_id.partition("-")[0])
    except ValueError:
        return None
    now = time.time() * 1000 if now_ms is None else now_ms
    return max(0.0, (now - ms) / 1000)


def number(value: object) -> str:
    """Thousands separated with a thin space; ``-`` when unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}".replace(",", "\u2009")
    return f"{int(value):,}".replace(",", "\u2009")


def clip(text: object, cap: int = TEXT_CAP) -> str:
    """At most ``cap`` characters, with how many were left out."""
    value = str(text)
    if len(value) <= cap:
        return value
    return f"{value[:cap]}… ({len(value) - cap} more characters)"


def pretty(value: str, cap: int = TEXT_CAP) -> str:
    """JSON text indented for reading; anything else as it is. Always clipped."""
    stripped = value.strip()
    if stripped[:1] in {"{", "["}:
        with contextlib.suppress(ValueError):
            value = json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)
    return clip(value, cap)


def task_state(state: object) -> str:
    """A task's colour: one still running is in progress (a worker running is simply fine)."""
    return "busy" if state == "running" else state_class(state)


def as_json(value: object) -> str:
    """Any JSON value indented for reading, as plain text (escaped like any other)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def state_class(state: object) -> str:
    return _STATE_CLASS.get(str(state), "idle")


def path_part(value: str) -> str:
    """A value as one URL path segment (stream keys keep their ``:`` and braces)."""
    return quote(value, safe=":{}@!$&'()*+,;=-._~")


def sparkline(values: Sequence[float], width: int = 240, height: int = 36) -> Markup:
    """An SVG bar chart built from numbers alone (nothing from Redis reaches it as text)."""
    if not values:
        return Markup("")
    top = max(values) or 1.0
    bar = width / len(values)
    rects = []
    for i, v in enumerate(values):
        h = max(1.0, height * float(v) / top) if v > 0 else 0.0
        rects.append(
            f'<rect x="{i * bar:.2f}" y="{height - h:.2f}" width="{max(bar - 1, 1):.2f}" '
            f'height="{h:.2f}"></rect>'
        )
    return Markup(  # noqa: S704 - floats and ints formatted above, no text from Redis
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="messages per minute, last hour">{"".join(rects)}</svg>'
    )


def _make_env() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("printery.dashboard", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        ago=ago,
        duration=duration,
        number=number,
        clip=clip,
        pretty=pretty,
        as_json=as_json,
        state=state_class,
        task_state=task_state,
        path=path_part,
    )
    environment.globals.update(sparkline=sparkline, since_id=since_id)
    return environment


env: Final = _make_env()


def render(name: str, context: Mapping[str, Any]) -> str:
    return env.get_template(name).render(**context)


def page(
    request: web.Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """A template as an HTML response, with what every page needs (nonce, sign-in state)."""
    common = {
        "nonce": request.get(NONCE, ""),
        "auth": request.get(IDENTITY),
        "read_only": request.get(READ_ONLY, True),
        "path": request.path,
        "fragment": "fragment" in request.query,
    }
    body = render(name, {**common, **context})
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
