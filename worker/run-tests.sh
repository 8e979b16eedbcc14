#!/usr/bin/env bash
# Installs the Worker's pinned npm dependencies into worker/node_modules, type-checks src/ with
# tsc (JSDoc, tsconfig.json), checks that the committed bundle is current, and runs the unit,
# shared policy vector (../tests/vectors) and workerd integration tests.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
node node_modules/typescript/bin/tsc -p .
node build.mjs --check
node --test test/*.test.mjs
