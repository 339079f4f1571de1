# syntax=docker/dockerfile:1
#
# One file, three images — pick the service with --target:
#
#   docker build --target postings      -t hirestream/postings:dev .
#   docker build --target applications  -t hirestream/applications:dev .
#   docker build --target notifications -t hirestream/notifications:dev .
#
# Each image holds only its own service's locked dependencies (uv sync --frozen --package),
# no uv, pip or compiler, runs as an unprivileged user, and runs python as PID 1 so SIGTERM
# reaches uvicorn, which drains requests and then the Kafka side (SHUTDOWN_TIMEOUT_S).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${UV_IMAGE} AS uv

# ---- web-assets: the files behind /docs and /asyncapi, from the npm lock file -------------
# Only the built files leave this stage: no Node in the images, no CDN at run time.
FROM ${NODE_IMAGE} AS web-assets
WORKDIR /src
COPY shared/web-assets shared/web-assets
RUN --mount=type=cache,target=/root/.npm bash shared/web-assets/build.sh

# ---- build: a virtualenv per service, from uv.lock only ----------------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# Compile bytecode now: at run time the root filesystem is read-only and nothing is written.
# Copy (not hard-link) from the cache mount; use the image's Python, never download one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# The workspace needs every member's pyproject.toml to read the lock, even for one package.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/postings/pyproject.toml services/postings/
COPY services/applications/pyproject.toml services/applications/
COPY services/notifications/pyproject.toml services/notifications/

FROM build AS build-postings
# Third-party dependencies first: this layer is reused until uv.lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hirestream-postings
COPY shared/src shared/src
COPY --from=web-assets /src/shared/src/hirestream/shared/web/static shared/src/hirestream/shared/web/static
COPY services/postings/src services/postings/src
# --no-editable: the workspace packages are installed into the venv, so /src is not needed;
# the wheel carries the git-ignored viewer files (shared/pyproject.toml, `artifacts`).
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hirestream-postings

FROM build AS build-applications
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hirestream-applications
COPY shared/src shared/src
COPY --from=web-assets /src/shared/src/hirestream/shared/web/static shared/src/hirestream/shared/web/static
COPY services/applications/src services/applications/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hirestream-applications

FROM build AS build-notifications
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hirestream-notifications
COPY shared/src shared/src
COPY --from=web-assets /src/shared/src/hirestream/shared/web/static shared/src/hirestream/shared/web/static
COPY services/notifications/src services/notifications/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hirestream-notifications

# ---- runtime: what the three images share ------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH
# The service installs nothing at run time: drop pip and friends. A fixed numeric uid/gid
# lets Kubernetes check runAsNonRoot and match runAsUser.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 hirestream \
    && useradd --system --uid 10001 --gid hirestream --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin hirestream
WORKDIR /app
USER 10001:10001
# Healthy = ready: /readyz answers 200 only when Kafka and MongoDB are connected. Start-up
# retries unreachable servers for up to 120 s, hence the long start period.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/readyz', timeout=2)"]

FROM runtime AS postings
COPY --from=build-postings /app/.venv /app/.venv
ENV PORT=8001
EXPOSE 8001
CMD ["python", "-m", "hirestream.postings"]

FROM runtime AS applications
COPY --from=build-applications /app/.venv /app/.venv
ENV PORT=8002
EXPOSE 8002
CMD ["python", "-m", "hirestream.applications"]

FROM runtime AS notifications
COPY --from=build-notifications /app/.venv /app/.venv
ENV PORT=8003
EXPOSE 8003
CMD ["python", "-m", "hirestream.notifications"]
