#!/usr/bin/env bash
# Debian packages the tests use, unpacked into the project-local .tools/debian (no root, nothing
# installed system-wide): Lua 5.1, the interpreter Argo CD runs health checks with, and promtool
# (package prometheus), which checks and unit-tests the chart's alert rules.
# Idempotent: does nothing when the tools are already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/debian"
if [ -x "$dest/usr/bin/lua5.1" ] && [ -x "$dest/usr/bin/promtool" ]; then
    exit 0
fi
debs="$root/.tools/debs"
mkdir -p "$debs" "$dest"
cd "$debs"
apt-get download lua5.1 liblua5.1-0 prometheus
for f in ./*.deb; do
    dpkg -x "$f" "$dest"
done
test -x "$dest/usr/bin/lua5.1" && test -x "$dest/usr/bin/promtool"
