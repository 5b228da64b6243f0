"""The supervisor: the manager that starts, watches, restarts and drains workers.

It speaks to the outside only through lifecycle events (:mod:`printery.lifecycle`);
logging and metrics are sinks the daemon subscribes.
"""

__all__: list[str] = []
