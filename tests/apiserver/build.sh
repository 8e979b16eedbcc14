#!/usr/bin/env bash
# Builds kube-testenv (embedded etcd + kube-apiserver) from Go modules only.
#
#   tests/apiserver/build.sh                    # kube-testenv
#   tests/apiserver/build.sh kubectl kustomize  # optional extra tools (same module, same versions)
#   tests/apiserver/build.sh kstatus            # kstatus (cli-utils) as Flux computes health
#   tests/apiserver/build.sh all                # all three
#
# Output: $KUBE_TESTENV_BIN_DIR (default <repo>/target/kube-testenv/). Prints the path of each
# binary on stdout. A rebuild with nothing changed is a Go build-cache hit (about a second).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${KUBE_TESTENV_BIN_DIR:-$repo/target/kube-testenv}"
mkdir -p "$out"
cd "$here"

# The wrapper module's own settings; never pick up -mod=mod or a vendor dir from the caller.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
export CGO_ENABLED=0

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(kube-testenv)
[ "${targets[0]}" = all ] && targets=(kube-testenv kubectl kustomize kstatus)

# Version stamps, as upstream's hack/lib/version.sh sets them: without them /version reports
# v0.0.0-master+$Format:%H$ with empty major/minor.
kver="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"   # e.g. v1.36.3
major="${kver#v}"; major="${major%%.*}"
minor="${kver#v*.}"; minor="${minor%%.*}"
cb=k8s.io/component-base/version
ldflags="-s -w -X $cb.gitVersion=$kver -X $cb.gitMajor=$major -X $cb.gitMinor=$minor -X $cb.gitTreeState=clean -X $cb.buildDate=1970-01-01T00:00:00Z"
# kubectl's `kubectl version` reads client-go's copy as well.
cg=k8s.io/client-go/pkg/version
ldflags="$ldflags -X $cg.gitVersion=$kver -X $cg.gitMajor=$major -X $cg.gitMinor=$minor -X $cg.gitTreeState=clean -X $cg.buildDate=1970-01-01T00:00:00Z"

for t in "${targets[@]}"; do
  case "$t" in
    kube-testenv) pkg=. ;;
    kubectl) pkg=k8s.io/kubernetes/cmd/kubectl ;;
    kustomize) pkg=sigs.k8s.io/kustomize/kustomize/v5 ;;
    kstatus) pkg=./kstatus ;;
    *) echo "build.sh: unknown target $t (kube-testenv, kubectl, kustomize, kstatus, all)" >&2; exit 2 ;;
  esac
  go build -trimpath -ldflags "$ldflags" -o "$out/$t" "$pkg"
  echo "$out/$t"
done
