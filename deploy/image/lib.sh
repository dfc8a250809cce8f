# Shared by build.sh and test.sh (sourced, not run): the container engine's setup.
# shellcheck shell=bash

IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$IMAGE_DIR/../.." && pwd)"
# Scratch space: build logs, the engine's config, the SBOM copied out of the image.
STATE_DIR="${STATE_DIR:-$REPO/.local/image}"

say() { echo "image: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# The Debian packages the scripts need: podman and buildah (build and run), runc (the
# runtime that works on hosts where crun cannot set rlimits or use a hybrid cgroup tree),
# debootstrap (a base image made from Debian's packages when no registry is reachable).
ensure_engine() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v buildah >/dev/null || missing+=(buildah)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]} == 0)) && return 0
    if [[ "$(id -u)" != 0 ]]; then
        die "missing: ${missing[*]} (Debian packages: podman buildah runc debootstrap)"
    fi
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc debootstrap >/dev/null
}

# podman with a config of our own unless the caller brings one (CONTAINERS_CONF): runc,
# cgroups managed by the engine itself (no systemd needed), and no default ulimits (a
# container inherits the caller's limits instead of having them raised, which an
# unprivileged or nested host refuses).
engine_config() {
    if [[ -z "${CONTAINERS_CONF:-}" ]]; then
        mkdir -p "$STATE_DIR"
        CONTAINERS_CONF="$STATE_DIR/containers.conf"
        cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
    fi
    export CONTAINERS_CONF
}

# The version the wheel gets (pyproject.toml), for the image tag and its label.
project_version() {
    sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/pyproject.toml" | head -n 1
}
