# syntax=docker/dockerfile:1
# target-profile-sync: the consumer (`profile-sync run`) and, with another command, the
# Target emulator (`profile-sync emulator`) from the same image.
#
#   docker build -t target-profile-sync:0.1.0 .
#   docker run --rm --read-only -p 8000:8000 --env-file my.env target-profile-sync:0.1.0
#
# Without a registry (or with podman): deploy/image/build.sh, which makes the same Debian
# base from Debian's packages when it cannot pull one. deploy/image/test.sh builds it and
# runs it against a real Kafka and the emulator on every CI run (docs/deploy.md, section 2).
#
# The base is Debian bookworm and the interpreter is Debian's own python3 (3.11), installed
# with apt like the rest of the system, so a rebuild takes Debian's security fixes for
# Python and OpenSSL alike. Two stages: `build` makes the project's wheel from the source
# tree, installs it with its dependencies into a virtualenv and compiles the hot path there
# with mypyc; the final stage has python3 and that virtualenv, no pip, no compiler, no
# mypy, no package caches, no tests.
#
# The image runs the hot path compiled (consumer/compiled.py: C extensions beside their
# sources, used only while a manifest of the sources' SHA-256 matches them). To tell:
# `docker run --rm IMAGE compiled status` prints "compiled (N modules)" and exits 0, and
# /metrics has profile_sync_build_info{hot_path="compiled"}. PROFILE_SYNC_COMPILED=require
# makes `profile-sync run` refuse to start interpreted (exit 2); =off runs the same code
# interpreted, for comparison.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# PIP_CERT: a CA bundle for the package index, when the build must trust more than
# Debian's CAs (deploy/image/build.sh mounts the host's bundle for this build only).
ARG PIP_CERT
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# gcc and python3-dev (the interpreter's headers): mypyc's C extensions, built in this
# stage only.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
        gcc python3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole build context; .dockerignore keeps out everything that is not package source,
# so whatever packages pyproject.toml lists land in the wheel, and only those.
COPY . .
# The virtualenv gets no pip of its own: the build stage's pip installs into it. Bytecode
# is compiled here, because the root filesystem is read-only at run time. Test suites that
# dependencies ship inside their packages are dropped.
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python3 -m venv --without-pip /opt/profile-sync \
 && pip --python /opt/profile-sync/bin/python install --compile /dist/*.whl \
 && find /opt/profile-sync -depth -type d \( -name tests -o -name _tests \) \
        -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/profile-sync/bin/profile-sync --help > /dev/null
# The hot path compiled with mypyc, for the installed sources. mypy and setuptools (the
# `compile` extra, at the versions pyproject.toml pins) go into a throwaway virtualenv that
# sees the installed packages through a .pth file, so pip adds only what the extra needs
# and mypy types the code against the dependencies really installed (-P: the installed
# package, not the source tree in the working directory). `compiled build`
# compiles a copy of the package and puts the C extensions and the manifest of the
# sources' SHA-256 beside the installed sources; `compiled status` fails the build unless
# the installed package then runs compiled. Nothing of mypy or setuptools stays.
RUN site="$(/opt/profile-sync/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && python3 -m venv --without-pip /tmp/mypyc \
 && echo "$site" > "$(/tmp/mypyc/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/profile-sync.pth" \
 && pip --python /tmp/mypyc/bin/python install "$(echo /dist/*.whl)[compile]" \
 && MYPY_CACHE_DIR=/tmp/mypyc/cache /tmp/mypyc/bin/python -P -m consumer compiled build \
 && rm -rf /tmp/mypyc \
 && /opt/profile-sync/bin/profile-sync compiled status
# The SBOM (every Python package, pinned), written from what the virtualenv really holds.
RUN mkdir /opt/profile-sync/sbom \
 && pip --python /opt/profile-sync/bin/python list --format=freeze \
        > /opt/profile-sync/sbom/python-packages.txt

FROM ${BASE_IMAGE}
# Debian's python3 and nothing else from apt (not even the few modules of CPython's own
# test suite that Debian puts in the standard library package); apt's lists and logs are
# removed in the same layer. A fixed numeric uid/gid, so Kubernetes can verify
# runAsNonRoot. The state directory (PROFILE_SYNC_SINGLE_QUOTA_STATE_FILE) belongs to it,
# so a volume mounted there starts writable.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
        /usr/lib/python3.11/test \
 && groupadd --system --gid 10001 profile-sync \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin profile-sync \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/target-profile-sync
COPY --from=build /opt/profile-sync /opt/profile-sync
# The rest of the SBOM: every Debian package in the final image, with its version.
RUN dpkg-query --show --showformat '${Package}=${Version}\n' \
        > /opt/profile-sync/sbom/debian-packages.txt
ENV PATH="/opt/profile-sync/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# /metrics, /livez, /readyz (PROFILE_SYNC_HTTP_PORT).
EXPOSE 8000
# exec form: the service is PID 1 and receives SIGTERM itself (graceful shutdown).
ENTRYPOINT ["profile-sync"]
CMD ["run"]
# Last, so a new commit changes only this metadata step and every layer above is reused.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="target-profile-sync" \
      org.opencontainers.image.description="Streams POS/CRM profile-change events from Kafka into Adobe Target's profile APIs." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
