#!/usr/bin/env bash
# Builds the Helm CLI from its Go module (helm.sh/helm/v4, the `tool` line in go.mod) for the
# tests that run commands as a user types them (docs/getting-started.md). No binary download.
#
#   tests/helm/build.sh        # -> target/tools/helm (prints the path)
#
# A rebuild with nothing changed is a Go build-cache hit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${HELM_BIN_DIR:-$repo/target/tools}"
mkdir -p "$out"
cd "$here"
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
export CGO_ENABLED=0
ver="$(go list -m -f '{{.Version}}' helm.sh/helm/v4)"
# As Helm's Makefile stamps it; without it `helm version` says only the major.minor.
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$ver" -o "$out/helm" helm.sh/helm/v4/cmd/helm
echo "$out/helm"
