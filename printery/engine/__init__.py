"""The consumer engine: how a stream worker reads, handles and commits its group's messages.

It knows the worker contract and the Redis boundary, and nothing of the
supervisor, the daemon, the pipeline or the CLI.
"""

__all__: list[str] = []
