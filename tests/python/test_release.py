"""The release workflow (.github/workflows/release.yml): actionlint accepts it, it pushes the
image the chart's values point at, and its release-notes step extracts the tag's CHANGELOG
section (the step's own awk program is run here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def actionlint() -> str:
    exe = os.environ.get("EDGEBIND_ACTIONLINT") or str(REPO / "target" / "tools" / "actionlint")
    if not Path(exe).exists():
        # Built from its Go module, as scripts/test.sh does (no binary download).
        env = dict(os.environ, GOBIN=str(Path(exe).parent), CGO_ENABLED="0")
        subprocess.run(["go", "install", "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"],
                       check=True, env=env)
    return exe


def test_actionlint_accepts_every_workflow():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert RELEASE in files
    r = subprocess.run([actionlint(), *map(str, files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_workflow_pushes_the_image_and_chart_the_values_name():
    wf = yaml.safe_load(RELEASE.read_text())
    values = yaml.safe_load((REPO / "deploy/helm/edgebind/values.yaml").read_text())
    chart = yaml.safe_load((REPO / "deploy/helm/edgebind/Chart.yaml").read_text())
    owner = re.search(r"github\.com/([^/]+)/", (REPO / "Cargo.toml").read_text()).group(1)
    image = wf["env"]["IMAGE"].replace("${{ github.repository_owner }}", owner)
    assert image == values["image"]["repository"]
    # The image tag is the version without "v", which is the chart's appVersion (the default tag).
    build = next(s for s in wf["jobs"]["image"]["steps"] if s.get("id") == "build")
    assert build["with"]["tags"] == "${{ env.IMAGE }}:${{ steps.version.outputs.version }}"
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["sbom"] is True
    assert str(chart["appVersion"]) == str(chart["version"])
    assert any("cosign sign" in s.get("run", "") for s in wf["jobs"]["image"]["steps"])
    assert wf["jobs"]["image"]["permissions"]["id-token"] == "write"


def test_release_notes_are_the_tags_changelog_section(tmp_path: Path):
    wf = yaml.safe_load(RELEASE.read_text())
    step = next(s for s in wf["jobs"]["release"]["steps"] if s.get("name") == "Release notes from CHANGELOG.md")
    (tmp_path / "CHANGELOG.md").write_text(
        "# Changelog\n\n## [Unreleased]\n\n- next\n\n## [0.2.0] - 2027-01-10\n\n### Added\n- two\n\n"
        "## [0.1.0] - 2026-12-07\n\n- one\n")
    bash = shutil.which("bash")
    for tag, want in (("v0.2.0", "### Added\n- two"), ("v0.1.0", "- one")):
        r = subprocess.run([bash, "-euo", "pipefail", "-c", step["run"]], cwd=tmp_path,
                           env=dict(os.environ, TAG=tag), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "notes.md").read_text().strip() == want
    r = subprocess.run([bash, "-euo", "pipefail", "-c", step["run"]], cwd=tmp_path,
                       env=dict(os.environ, TAG="v9.9.9"), capture_output=True, text=True)
    assert r.returncode != 0 and "no section [9.9.9]" in r.stderr
