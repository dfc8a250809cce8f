#!/usr/bin/env bash
# Build the container image from the repository's Dockerfile with podman, on a machine that
# reaches a registry or on one that reaches only Debian's packages and the package index.
#
#   deploy/image/build.sh          build $IMAGE (default localhost/target-profile-sync:VERSION)
#   deploy/image/build.sh base     only make sure a base image exists; print its name
#
# The base (the Dockerfile's BASE_IMAGE) is the first of:
#   1. $BASE_IMAGE, if set;
#   2. debian:bookworm-slim, if the engine has it or can pull it;
#   3. the same thing made here from Debian's packages: debootstrap's minbase of bookworm,
#      slimmed the way the official image is (no docs, man pages or apt lists), imported as
#      localhost/target-profile-sync-base:bookworm. It stays in the engine's store and is
#      reused until it is older than BASE_MAX_AGE_DAYS (default 7), then made again, so
#      Debian's security updates reach the image.
#
# After the build the image's package lists (its SBOM, written at build time inside the
# image) are copied to $STATE_DIR/sbom and printed.
#
# Environment (all optional):
#   IMAGE              tag to build (default localhost/target-profile-sync:<pyproject version>)
#   BASE_IMAGE         base image; "local" forces the debootstrap one
#   BASE_MAX_AGE_DAYS  age at which the local base is remade (default 7)
#   BUILD_CA_BUNDLE    CA bundle pip trusts inside the build, mounted read-only for the build
#                      only (default: this machine's /etc/ssl/certs/ca-certificates.crt);
#                      "none" to use the image's own
#   STATE_DIR          logs, engine config, SBOM copies (default <repo>/.local/image)
#   CONTAINERS_CONF    podman's config (default: one written by these scripts, see lib.sh)
set -euo pipefail
# shellcheck source=deploy/image/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PUBLIC_BASE="docker.io/library/debian:bookworm-slim"
LOCAL_BASE="localhost/target-profile-sync-base:bookworm"
BASE_MAX_AGE_DAYS="${BASE_MAX_AGE_DAYS:-7}"
VERSION="$(project_version)"
IMAGE="${IMAGE:-localhost/target-profile-sync:$VERSION}"
BUILD_CA_BUNDLE="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

# Seconds since the image was created, or nothing when it does not exist.
image_age() {
    local created
    created="$(podman image inspect --format '{{.Created.Unix}}' "$1" 2>/dev/null)" || return 0
    echo $(($(date +%s) - created))
}

make_local_base() {
    local root started=$SECONDS
    root="$(mktemp -d "${TMPDIR:-/tmp}/profile-sync-base.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$root'" RETURN
    say "making $LOCAL_BASE with debootstrap (Debian bookworm, minbase)"
    debootstrap --variant=minbase bookworm "$root" >"$STATE_DIR/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $STATE_DIR/debootstrap.log"
    # Debian's security and point-release updates, where the machine's own apt takes them
    # from when it runs bookworm too (a local mirror keeps working); otherwise debootstrap's
    # single suite stays.
    if [[ -f /etc/apt/sources.list.d/debian.sources ]] &&
        grep -q '^Suites:.*bookworm-security' /etc/apt/sources.list.d/debian.sources; then
        cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
        : >"$root/etc/apt/sources.list"
    fi
    # Slim like the official image: packages installed later keep no docs, man pages or
    # translations (copyright files stay), and apt keeps no downloaded packages.
    cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
APT::Keep-Downloaded-Packages "false";
Acquire::GzipIndexes "true";
CFG
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log \
        "$root"/var/log/apt/*
    tar -C "$root" --numeric-owner -cf - . |
        podman import --change 'CMD ["bash"]' - "$LOCAL_BASE" >/dev/null
    say "made $LOCAL_BASE in $((SECONDS - started)) s"
}

resolve_base() {
    if [[ -n "${BASE_IMAGE:-}" && "$BASE_IMAGE" != local ]]; then
        echo "$BASE_IMAGE"
        return
    fi
    if [[ "${BASE_IMAGE:-}" != local ]]; then
        if podman image exists "$PUBLIC_BASE" || podman pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
            echo "$PUBLIC_BASE"
            return
        fi
        say "$PUBLIC_BASE cannot be pulled: using a base made from Debian's packages"
    fi
    local age
    age="$(image_age "$LOCAL_BASE")"
    if [[ -z "$age" ]] || ((age > BASE_MAX_AGE_DAYS * 86400)); then
        make_local_base
    else
        say "reusing $LOCAL_BASE ($((age / 3600)) h old)"
    fi
    echo "$LOCAL_BASE"
}

# Copies the package lists the build wrote into the image out of it, and prints them.
print_sbom() {
    local ctr out="$STATE_DIR/sbom"
    rm -rf "$out"
    mkdir -p "$out"
    ctr="$(podman create "$IMAGE")"
    podman cp "$ctr:/opt/profile-sync/sbom/." "$out/" || {
        podman rm "$ctr" >/dev/null
        die "the image has no /opt/profile-sync/sbom"
    }
    podman rm "$ctr" >/dev/null
    say "Python packages in the image ($out/python-packages.txt):"
    sed 's/^/    /' "$out/python-packages.txt" >&2
    say "Debian packages in the image: $(wc -l <"$out/debian-packages.txt") ($out/debian-packages.txt)"
}

main() {
    ensure_engine
    engine_config
    mkdir -p "$STATE_DIR"
    local base
    base="$(resolve_base)"
    if [[ "${1:-}" == base ]]; then
        echo "$base"
        return
    fi
    local args=(
        --isolation chroot --network host --layers
        --build-arg "BASE_IMAGE=$base"
        --build-arg "VERSION=$VERSION"
        --build-arg "REVISION=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
        -f "$REPO/Dockerfile" -t "$IMAGE"
    )
    if [[ "$BUILD_CA_BUNDLE" != none && -f "$BUILD_CA_BUNDLE" ]]; then
        args+=(-v "$BUILD_CA_BUNDLE:/run/build-ca-bundle.crt:ro"
            --build-arg PIP_CERT=/run/build-ca-bundle.crt)
    fi
    local started=$SECONDS
    say "building $IMAGE on $base (log: $STATE_DIR/build.log)"
    if ! podman build "${args[@]}" "$REPO" >"$STATE_DIR/build.log" 2>&1; then
        tail -n 40 "$STATE_DIR/build.log" >&2
        die "the image build failed; whole log: $STATE_DIR/build.log"
    fi
    say "built $IMAGE in $((SECONDS - started)) s"
    # Images of earlier builds that no tag names any more: dropped after a day, so the store
    # does not grow with every build while the layers of recent ones stay as a cache.
    podman image prune --force --filter until=24h >/dev/null || true
    print_sbom
}

main "$@"
