"""The ``printery-workers`` daemon: settings and flags, wiring, endpoints, metrics, logs."""

__all__: list[str] = []
