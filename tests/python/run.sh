#!/usr/bin/env bash
# Runs the python-linstor tests against the LINSTOR simulator.
# Installs the client into .venv, then lets tests/python/conftest.py start the simulator:
# "$EDGEBIND_BIN simulate linstor" when EDGEBIND_BIN is set, else the ignored cargo test
# `serve_for_python`. Set LINSTOR_SIM_URL to use an already running simulator instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/scripts/install-python.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
