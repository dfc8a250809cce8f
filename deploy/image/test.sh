#!/usr/bin/env bash
# Build the container image and run it the way a pod does, against a real Kafka broker and
# the Target emulator (from the same image). `make image-test`; CI runs it after `make test`.
#
#   deploy/image/test.sh
#
# 1. installs podman, buildah, runc and debootstrap when missing (root, apt-get);
# 2. deploy/image/build.sh: the Dockerfile on debian:bookworm-slim, or on the same base made
#    from Debian's packages when no registry is reachable (cached in the engine's store);
# 3. pip-audit of the Python packages the image ships (its SBOM, pinned at build time)
#    against the vulnerability data of the Python package index;
# 4. starts a Kafka broker of its own on free ports, runs deploy/image/smoke.py (read-only
#    root, non-root, /readyz, events land in the emulator, SIGTERM exits 0 in time with
#    offsets committed, size budget, no compiler/pip/mypy/setuptools/caches/tests, the hot
#    path compiled: `profile-sync compiled status`, the consumer started with
#    PROFILE_SYNC_COMPILED=require and profile_sync_build_info{hot_path="compiled"}),
#    stops the broker.
#
# Environment (all optional): IMAGE (tag to build and test), PYTHON (the project's
# virtualenv python: httpx, confluent-kafka and prometheus-client for the checks),
# STATE_DIR (default <repo>/.local/image), SKIP_AUDIT=1 (no pip-audit), and what
# build.sh and deploy/local/kafka.sh read.
set -euo pipefail
# shellcheck source=deploy/image/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PIP_AUDIT_VERSION="2.10.1"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
IMAGE="${IMAGE:-localhost/target-profile-sync:test}"
export IMAGE

[[ -x "$PYTHON" ]] || die "no python at $PYTHON (run 'make install' first)"
started=$SECONDS
ensure_engine
engine_config
"$IMAGE_DIR/build.sh"
built=$SECONDS

# ---- vulnerabilities of the pinned Python packages
audit() {
    local venv="$STATE_DIR/audit-venv" pins="$STATE_DIR/sbom/python-packages.txt"
    if [[ ! -x "$venv/bin/pip-audit" ]] ||
        [[ "$("$venv/bin/python" -m pip show pip-audit 2>/dev/null | sed -n 's/^Version: //p')" != "$PIP_AUDIT_VERSION" ]]; then
        say "installing pip-audit $PIP_AUDIT_VERSION into $venv"
        "$PYTHON" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "pip-audit==$PIP_AUDIT_VERSION"
    fi
    # The project itself is not on the package index: audit its dependencies. --no-deps:
    # the list is complete and pinned (it is what the image holds).
    grep -v '^target-profile-sync==' "$pins" >"$STATE_DIR/audit-requirements.txt"
    say "pip-audit of $(wc -l <"$STATE_DIR/audit-requirements.txt") pinned packages (report: $STATE_DIR/audit.json)"
    "$venv/bin/pip-audit" --no-deps --disable-pip --progress-spinner off --format json \
        --requirement "$STATE_DIR/audit-requirements.txt" >"$STATE_DIR/audit.json" \
        2>"$STATE_DIR/audit.log" || true
    # pip-audit exits 0 when it could not look a package up at all, so the verdict is read
    # from its report: a package it could not audit is said so, never counted as clean.
    "$PYTHON" - "$STATE_DIR/audit.json" <<'PY'
import json, sys
try:
    deps = json.load(open(sys.argv[1]))["dependencies"]
except (OSError, ValueError, KeyError) as exc:
    sys.exit(f"image: pip-audit produced no report ({exc}); see audit.log")
vulnerable = [d for d in deps if d.get("vulns")]
skipped = [d for d in deps if "skip_reason" in d]
for d in vulnerable:
    ids = ", ".join(v["id"] for v in d["vulns"])
    print(f"image: VULNERABLE {d['name']}=={d['version']}: {ids}", file=sys.stderr)
audited = len(deps) - len(skipped)
if skipped:
    print(f"image: pip-audit could not reach vulnerability data for {len(skipped)} of "
          f"{len(deps)} packages (e.g. {skipped[0]['skip_reason']}): those are NOT audited",
          file=sys.stderr)
print(f"image: pip-audit: {audited} packages audited, {len(vulnerable)} with known "
      f"vulnerabilities", file=sys.stderr)
sys.exit(1 if vulnerable else 0)
PY
}
if [[ "${SKIP_AUDIT:-}" == 1 ]]; then
    say "pip-audit skipped (SKIP_AUDIT=1)"
else
    audit || die "pip-audit: the image ships Python packages with known vulnerabilities"
fi
audited=$SECONDS

# ---- a broker of our own, on free ports
free_ports() { # two consecutive free ports on 127.0.0.1: broker and controller
    "$PYTHON" - <<'PY'
import socket
for _ in range(100):
    with socket.socket() as a:
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
    print(port)
    break
PY
}
KAFKA_PORT="$(free_ports)"
KAFKA_STATE_DIR="$STATE_DIR/kafka-$KAFKA_PORT"
export KAFKA_PORT KAFKA_STATE_DIR
# shellcheck disable=SC2317 # called by the trap
stop_kafka() { "$REPO/deploy/local/kafka.sh" stop || true; rm -rf "$KAFKA_STATE_DIR/data"; }
trap stop_kafka EXIT
KAFKA_OWNER_PID=$$ "$REPO/deploy/local/kafka.sh" start

rm -rf "$STATE_DIR/logs"
"$PYTHON" "$IMAGE_DIR/smoke.py" --image "$IMAGE" --bootstrap "127.0.0.1:$KAFKA_PORT" \
    --log-dir "$STATE_DIR/logs"
say "image test passed in $((SECONDS - started)) s (build $((built - started)) s, audit $((audited - built)) s, run $((SECONDS - audited)) s)"
