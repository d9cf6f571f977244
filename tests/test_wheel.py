"""The package as a user gets it: sdist, then the wheel built from it (`python -m build`), installed with its
dependencies into a fresh venv and run in an empty directory, nowhere near this checkout.

Needs a package index for the build's setuptools and the wheel's dependencies (PyPI, or the machine's mirror).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    (built,) = out.glob("edged-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv bin/, an empty working directory, an environment that points nowhere near the checkout)."""
    root = tmp_path_factory.mktemp("fresh")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheel, cwd=root)
    empty = root / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGED_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(root)  # nothing from the user's state either
    return bin_dir, empty, env


def test_the_wheel_carries_the_zoo_the_clip_and_the_licences_but_no_build_leftovers(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    zoo = {n.removeprefix("edged/_zoo/") for n in names if n.startswith("edged/_zoo/")}
    assert {"zoo.yaml", "NOTICE", "MODEL_CARD.md", "yolox-ft.onnx", "yolox-relu-416.tflite"} <= zoo
    assert not any(n.startswith("report/") for n in zoo), "the Pareto report is documentation, not run time data"
    assert "edged/demo/vtest_10s.mp4" in names
    licences = {Path(n).name for n in names if ".dist-info/licenses/" in n}
    assert licences == {"LICENSE", "NOTICE"}
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_the_installed_wheel_lists_its_zoo_and_detects_on_its_clip_outside_the_checkout(installed) -> None:
    bin_dir, empty, env = installed
    where = run(bin_dir / "python", "-c", "import edged.demo as d; print(d.DEMO_CLIP)", cwd=empty, env=env)
    clip = Path(where.strip())
    site = next((bin_dir.parent / "lib").glob("python3*/site-packages"))
    assert clip.is_relative_to(site) and not clip.is_relative_to(ROOT)

    listing = json.loads(run(bin_dir / "edged", "zoo", "list", "--json", cwd=empty, env=env))
    manifest = Path(listing["manifest"])
    assert manifest == site / "edged" / "_zoo" / "zoo.yaml"
    default = yaml.safe_load(manifest.read_text())["default"]
    assert default in {v["id"] for v in listing["variants"]}

    lines = run(bin_dir / "edged", "detect", clip, "--json", "--max-frames", "5", cwd=empty, env=env).splitlines()
    frames = [json.loads(line) for line in lines]
    assert [f["frame"] for f in frames] == list(range(5))
    assert {f["variant"] for f in frames} == {default}
    assert sum(len(f["objects"]) for f in frames) > 0, "vtest is full of pedestrians"
    assert sorted(p.name for p in empty.iterdir()) == [], "nothing written to the working directory"


def test_the_installed_wheel_runs_the_demo_in_an_empty_directory(installed) -> None:
    """`edged run` with no config at all, in a network namespace of its own: nothing listens on :1883 there and the
    [demo] extra is not installed, so the detections come out on stdout; SIGTERM after 12 s stops it cleanly."""
    bin_dir, empty, env = installed
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private network namespace here (unshare -n needs root or user namespaces)")
    done = subprocess.run(
        [unshare, "-n", "timeout", "-s", "TERM", "12", bin_dir / "edged", "run"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 124, done.stderr  # timeout's status: it sent the TERM
    frames = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(frames) >= 20 and sum(len(f["objects"]) for f in frames) > 0, done.stderr
    assert "config: the embedded demo (no -c, $EDGED_CONFIG or /etc/edged/edged.yaml)" in done.stderr
    assert f"stopped after {len(frames)} frames" in done.stderr
