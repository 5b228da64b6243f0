"""The ``printery`` command: its argument parsing, and the demo."""

__all__: list[str] = []
