"""The one Redis boundary: the adapter, the key names, and the server-side scripts.

Nothing outside this package imports ``redis``: its exceptions are translated
here into :mod:`printery.errors`, so "Redis is unreachable" is one named
condition the supervisor treats as *degraded*, never as a crash.
"""

__all__: list[str] = []
