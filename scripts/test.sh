#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this) and what a developer runs.
# Installs everything it needs into project-local folders (.venv/, worker/node_modules/,
# .tools/ for Debian packages and target/ for tools built from Go modules).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
logs="$root/target/test-logs"
mkdir -p "$logs"

step() { printf '\n==> %s\n' "$*"; }

# Package installs need only the network: run them while Rust compiles.
step "installing Python and npm test dependencies (background)"
(bash scripts/install-python.sh >"$logs/pip.log" 2>&1; echo $? >"$logs/pip.rc") &
pip_pid=$!
(cd worker && npm ci --no-audit --no-fund --loglevel=error >"$logs/npm.log" 2>&1; echo $? >"$logs/npm.rc") &
npm_pid=$!
(bash scripts/install-debian.sh >"$logs/debian.log" 2>&1; echo $? >"$logs/debian.rc") &
debian_pid=$!
# A real kube-apiserver + etcd, kustomize, kstatus (tests/apiserver) and actionlint, built from
# their Go modules; Go's caches make this a few seconds after the first build.
step "building kube-apiserver + etcd (kube-testenv), kubectl, kustomize, kstatus, Helm and actionlint from Go modules (background)"
(
    {
        bash tests/apiserver/build.sh kube-testenv kubectl kustomize kstatus &&
            bash tests/helm/build.sh &&
            GOBIN="$root/target/tools" CGO_ENABLED=0 go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
    } >"$logs/go.log" 2>&1
    echo $? >"$logs/go.rc"
) &
go_pid=$!
export EDGEBIND_KUBE_TESTENV="$root/target/kube-testenv/kube-testenv"
export EDGEBIND_KUSTOMIZE="$root/target/kube-testenv/kustomize"
export EDGEBIND_KSTATUS="$root/target/kube-testenv/kstatus"
# docs/getting-started.md is run with the tools a user types (worker/test/getting-started.test.mjs).
export EDGEBIND_KUBECTL="$root/target/kube-testenv/kubectl"
export EDGEBIND_HELM="$root/target/tools/helm"
export EDGEBIND_ACTIONLINT="$root/target/tools/actionlint"

step "the repository stands on its own (nothing reads outside it)"
# The API documents and reference facts are vendored (specs/, docs/reference/). A path to the
# folder they were first laid out in would pass here and fail for everyone else.
outside='\.\./'"shared"'|'"shared"'/(specs|reference)'
if git grep -nIE --untracked "$outside" -- ':!target' ':!worker/node_modules' ':!.venv'; then
    echo "the lines above read outside the repository: use specs/ or docs/reference/" >&2
    exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building (debug, once) and checking generated files"
cargo build --workspace --locked --bins --tests
./target/debug/edgebind crds | diff -u crds/edgebind.dev.yaml - || {
    echo "crds/ is stale: run 'cargo run -q -- crds > crds/edgebind.dev.yaml'" >&2
    exit 1
}

wait "$go_pid" || true
if [ "$(cat "$logs/go.rc" 2>/dev/null)" != "0" ]; then
    echo "building the Go tools (kube-testenv, kubectl, kustomize, kstatus, Helm, actionlint) failed:" >&2
    cat "$logs/go.log" >&2
    exit 1
fi

step "Rust tests (unit and integration; some against the real kube-apiserver)"
# The suite records the controller's Kubernetes API calls here for the RBAC coverage test.
export EDGEBIND_RBAC_CALLS_DIR="$root/target/tmp/rbac-calls"
rm -rf "$EDGEBIND_RBAC_CALLS_DIR"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

wait "$pip_pid" "$npm_pid" "$debian_pid" || true
for t in pip npm debian; do
    if [ "$(cat "$logs/$t.rc" 2>/dev/null)" != "0" ]; then
        echo "$t install failed:" >&2
        cat "$logs/$t.log" >&2
        exit 1
    fi
done

step "Python suites (python-linstor, Cloudflare SDK) and the Worker suite, in parallel"
export EDGEBIND_BIN="$root/target/debug/edgebind"
(.venv/bin/python -m pytest -q -p no:cacheprovider tests/python >"$logs/pytest.log" 2>&1; echo $? >"$logs/pytest.rc") &
py_pid=$!
(bash worker/run-tests.sh >"$logs/worker.log" 2>&1; echo $? >"$logs/worker.rc") &
wk_pid=$!
wait "$py_pid" "$wk_pid" || true
status=0
for t in pytest worker; do
    printf '\n--- %s ---\n' "$t"
    tail -n 40 "$logs/$t.log"
    [ "$(cat "$logs/$t.rc")" = "0" ] || status=1
done
# Disk is the scarcest thing on a CI machine: say what this run left behind.
printf '\n--- disk ---\n'
du -sh target worker/node_modules .venv 2>/dev/null || true
exit "$status"
