"""What an operator does to an installation through Redis: status, dead letters, tables.

Shared by the ``printery`` command and the dashboard.
"""

__all__: list[str] = []
