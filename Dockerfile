# syntax=docker/dockerfile:1
# target-profile-sync: the consumer (`profile-sync run`) and, with another command, the
# Target emulator (`profile-sync emulator`) from the same image.
#
#   docker build -t target-profile-sync:0.1.0 .
#   docker run --rm --read-only -p 8000:8000 --env-file my.env target-profile-sync:0.1.0
#
# Two stages: `build` makes the wheel and installs it into a virtualenv; the final stage
# copies only that virtualenv onto a clean slim base. No compilers are needed at all
# (confluent-kafka, fastavro and pyyaml ship binary wheels), and no pip cache is kept.
# tests/integration/test_packaging.py performs the same wheel build and install on every
# CI run, since no Docker engine runs there.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the tree out).
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY emulator/ emulator/
COPY consumer/ consumer/
COPY sampler/ sampler/
# The virtualenv gets no pip of its own: the build stage's pip installs into it.
# Bytecode is compiled here, because the root filesystem is read-only at run time.
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv --without-pip /opt/profile-sync \
 && pip --python /opt/profile-sync/bin/python install --compile /dist/*.whl \
 && /opt/profile-sync/bin/profile-sync --help > /dev/null

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="target-profile-sync" \
      org.opencontainers.image.description="Streams POS/CRM profile-change events from Kafka into Adobe Target's profile APIs." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A fixed numeric uid/gid, so Kubernetes can verify runAsNonRoot. The state directory
# (PROFILE_SYNC_SINGLE_QUOTA_STATE_FILE) belongs to it, so a volume mounted there starts
# writable. The base image's own pip, setuptools and wheel are removed: nothing installs
# anything at run time.
RUN groupadd --system --gid 10001 profile-sync \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin profile-sync \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/target-profile-sync \
 && python -m pip uninstall --yes --no-cache-dir pip setuptools wheel
COPY --from=build /opt/profile-sync /opt/profile-sync
ENV PATH="/opt/profile-sync/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# /metrics, /livez, /readyz (PROFILE_SYNC_HTTP_PORT).
EXPOSE 8000
# exec form: the service is PID 1 and receives SIGTERM itself (graceful shutdown).
ENTRYPOINT ["profile-sync"]
CMD ["run"]
