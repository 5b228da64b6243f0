# syntax=docker/dockerfile:1
#
# printery-workers image.
#
#   docker build -t printery:dev .
#   docker run --rm -e REDIS_URL=redis://redis:6379/0 -e WORKER_MODE=validator printery:dev
#   deploy/image registry.example.com/platform/printery   # build, label and push a release
#
# Two stages: `builder` turns the checkout into wheels (printery's own and every
# dependency's), `runtime` installs them into a virtualenv without a compiler,
# a build tool or the source tree. deploy/README.md explains how it is run.
#
# The base is pinned by tag. Before a release, pin it by digest too:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
# and build with --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<index digest>.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore lets through only what the wheel is built from.
COPY pyproject.toml README.md LICENSE ./
COPY printery/ ./printery/

# The project's wheel first, then wheels of everything it depends on, so the
# runtime stage installs offline from /wheels and never builds anything.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/printery-*.whl


FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="printery-workers" \
      org.opencontainers.image.description="Supervisor daemon for Redis Streams workers: validator, dependency-checker, health-monitor, notifier" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed, numeric UID/GID: Kubernetes' runAsNonRoot can only verify a numeric
# user, and the manifests under deploy/k8s pin runAsUser to the same 10001.
RUN groupadd --system --gid 10001 printery \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin printery

# Installed as root into a venv the runtime user cannot modify. The wheels
# come through a bind mount, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/printery \
 && /opt/printery/bin/pip install --no-cache-dir --no-index --find-links=/wheels printery \
 && /opt/printery/bin/printery-workers --version

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes.
ENV PATH=/opt/printery/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

USER 10001:10001
EXPOSE 8080

# Kubernetes ignores HEALTHCHECK (it has its own probes); docker and compose use it.
# It asks /health on the container's HTTP_PORT, read when it runs (so `-e
# HTTP_PORT=9090` is followed); HTTP_PORT=0 turns the endpoints off, and then
# there is nothing to ask. A 503 raises, and so exits 1.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HTTP_PORT', '8080'); sys.exit(port != '0' and urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2).status != 200)"]

# SIGTERM starts the drain (README: How it behaves); exec form makes printery-workers PID 1,
# so the signal reaches it and not a shell.
STOPSIGNAL SIGTERM
ENTRYPOINT ["printery-workers"]
