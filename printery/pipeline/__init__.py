"""The deployment pipeline: validator → dependency-checker → health-monitor → notifier.

An application built on printery's public worker API, and nothing more: it
uses only what a worker of one's own could use (import-linter checks it).
"""

__all__: list[str] = []
