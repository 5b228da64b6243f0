"""Workers in their own processes: declared in a TOML file, run as children.

::

    workers_file.py   the TOML file: one WorkerDefinition per [workers.<name>], exit 2 on a mistake
    protocol.py       the JSON-lines messages of pool protocol 1, and oneshot's stdin/stdout
    child.py          one child process: its own group, stderr re-logged, RSS, kill
    pool.py           N long-lived children: ready handshake, heartbeat, timeouts, recycling
    oneshot.py        one process per message, the exit code deciding
    worker.py         the StreamWorker that hands each message to a child and commits its result
    task.py           what each message did: printery:task:<event id> and its capped log
    check.py          ``printery worker-check``: the protocol cases, without Redis

The daemon, never the child, talks to Redis; a child's environment holds only
what its definition lists, plus ``PATH``, ``HOME``, ``LANG`` and ``TZ``.
"""

__all__: list[str] = []
