#!/usr/bin/env bash
# Installs the Worker's pinned npm dependencies into worker/node_modules, checks that the
# committed bundle is current, and runs the unit and workerd integration tests.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
node build.mjs --check
node --test test/*.test.mjs
