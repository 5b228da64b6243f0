"""Where ``Write`` and the adapter were imported from before the Redis boundary had a package.

Code written against the earlier README (``from printery.adapter import Write``)
keeps working; new code imports ``from printery import Write``.
"""

from __future__ import annotations

from printery.redis.adapter import StreamAdapter, connect
from printery.redis.replies import Entry
from printery.redis.writes import Write

__all__ = ["Entry", "StreamAdapter", "Write", "connect"]
