# syntax=docker/dockerfile:1
# Docket: one image for every role. DOCKET_ROLE (or the first argument) picks it:
#   web      gunicorn serving Docket and its static files (WhiteNoise); migrates first, under a lock
#   worker   django-q2's qcluster; waits until the migrations are applied
#   migrate  apply migrations and exit (a one-shot job)
# See compose.yaml for a whole team server, and dashboard/management/commands/start.py for the steps.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Build: a virtual environment with Docket's runtime dependencies, PostgreSQL and Redis drivers ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY pyproject.toml ./
# As the Makefile does: pyproject.toml's lists are the requirements (Docket is not installed as a package),
# here the runtime list plus the `team` extra. Every driver ships as a wheel: no compiler needed.
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["team"]))' > requirements.txt \
    && python -m venv /venv \
    && /venv/bin/pip install --no-cache-dir -r requirements.txt

# --- Static files: collected once, at build time, with hashed names and gzip copies ---------------
FROM builder AS static
WORKDIR /src
COPY . .
# Production settings refuse to load without SECRET_KEY and ALLOWED_HOSTS. These values exist only for
# this one command, which signs nothing; they are not kept in the image (no ENV, no ARG).
RUN DOCKET_PRODUCTION=1 SECRET_KEY=collectstatic-at-build-time-only ALLOWED_HOSTS=build.invalid \
    DOCKET_VAR_DIR=/tmp/docket-build DOCKET_STATIC_ROOT=/src/staticfiles \
    /venv/bin/python manage.py collectstatic --noinput --verbosity 1 \
    && rm -rf /tmp/docket-build

# --- Runtime: the virtual environment, the code and the collected files; no compiler, no pip cache ---
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH="/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DOCKET_ROLE=web \
    DOCKET_PRODUCTION=1 \
    DOCKET_VAR_DIR=/data \
    DOCKET_STATIC_ROOT=/app/staticfiles \
    DOCKET_PORT=8000
# A fixed numeric id, so orchestrators that require a non-root user can check it.
RUN groupadd --system --gid 10001 docket \
    && useradd --system --uid 10001 --gid docket --no-create-home --home-dir /data --shell /usr/sbin/nologin docket \
    && mkdir -p /data \
    && chown docket:docket /data
COPY --from=builder /venv /venv
WORKDIR /app
# The code belongs to root and is read-only for the service; only /data is writable.
COPY . .
COPY --from=static /src/staticfiles /app/staticfiles
RUN python -m compileall -q /app
# Uploads (shared by web and workers), generated keys, and the SQLite database when no DATABASE_URL is set.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
# Exec form: the entrypoint execs gunicorn or qcluster, which then receive Docker's signals directly.
ENTRYPOINT ["python", "/app/manage.py", "start"]
