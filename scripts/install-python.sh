#!/usr/bin/env bash
# Installs the Python test dependencies into the project-local .venv at the repository root.
# Every tests/python/requirements*.txt is installed, so each test suite keeps its own pinned
# list (easier to merge than one shared file). Idempotent: pip skips what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
args=()
for req in "$root"/tests/python/requirements*.txt; do
    [ -e "$req" ] && args+=(-r "$req")
done
if [ "${#args[@]}" -gt 0 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
fi
