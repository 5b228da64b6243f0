"""``printery dashboard``: a web page to watch the installation live and act on dead letters.

=============  ==============================================================
module         what it holds
=============  ==============================================================
``config``     DASHBOARD_HOST / _PORT / _TOKEN, checked (exit 2 when bad)
``sampler``    the one reader of the status, shared by every viewer
``app``        the aiohttp application: routes, middlewares, static files
``security``   the headers of every response (CSP with a nonce, nosniff, …)
``auth``       token, session cookie, CSRF token, Origin check
``views``      overview, ``/api/status``, timelines (deployments and tasks)
``pages``      a stream's page and its dead letters, paged with cursors
``actions``    replay and purge (the same operations as ``printery dlq``), sign-in
``render``     the Jinja2 environment (autoescape on) and the pages' filters
``serve``      the command's body: connect, serve, stop on a signal
=============  ==============================================================
"""

from __future__ import annotations

from printery.dashboard.app import create_app
from printery.dashboard.config import DashboardConfig

__all__ = ["DashboardConfig", "create_app"]
