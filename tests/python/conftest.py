"""Starts the LINSTOR simulator for the python-linstor tests (or uses LINSTOR_SIM_URL)."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 600  # the cargo fallback may have to compile the test binary first


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url, proc):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"simulator exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v1/controller/version", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"simulator at {url} not ready after {START_TIMEOUT_S}s")


@pytest.fixture(scope="session")
def sim_url():
    url = os.environ.get("LINSTOR_SIM_URL")
    if url:
        _wait_ready(url, None)
        yield url.rstrip("/")
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    binary = os.environ.get("EDGEBIND_BIN")
    if binary:
        cmd = [binary, "simulate", "linstor", "--listen", f"127.0.0.1:{port}"]
    else:
        cmd = ["cargo", "test", "-q", "--test", "integration", "serve_for_python", "--",
               "--ignored", "--exact", "linstor_sim::serve_for_python", "--nocapture"]
    env = dict(os.environ, LINSTOR_SIM_PORT=str(port))
    # Own session, so stopping it also stops the test binary cargo starts.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL)
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
