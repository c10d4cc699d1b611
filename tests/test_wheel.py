"""The tool installed the ordinary way, from its wheel into a fresh environment, works from any folder.

The wheel is built from a copy of the sources and installed with pip --no-index, so the test runs offline.
Its dependencies (torch and the rest) are those of the test environment, made visible to the fresh one
through a .pth file; pip still checks that they satisfy what the wheel declares. The checkout itself is
never on the fresh environment's path, so a file found only through the checkout would fail the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "mambapoc", "kernels", "recipes", "sample_data")
MAX_WHEEL_BYTES = 25 * 2**20
QUICK_DEMO = ["--set", "compare.lengths=[256]", "--set", "compare.tasks=[needle]", "--set", "compare.instances=2",
              "--set", "compare.repeats=1", "--set", "compare.min_time_s=0", "--set", "compare.new_tokens=2",
              "--set", "compare.batch_sizes=[]", "--set", "report.lang=[en]", "--set", "report.formats=[html,pdf]"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 420) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd[:3]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".work-*", ".*.staging", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", dist, src], cwd=tmp)
    (wheel,) = dist.glob("mambapoc-*.whl")
    return wheel


def _fresh_env(tmp: Path) -> Path:
    """A new virtual environment that sees the test environment's packages, except mambapoc itself."""
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", env], cwd=tmp)
    deps = tmp / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("mambapoc", "__editable__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    python = env / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip()
    (Path(site) / "test_dependencies.pth").write_text(f"{deps}\n")
    return env


def test_the_wheel_installs_and_runs_the_demo_and_a_recipe_from_an_empty_folder(tmp_path):
    wheel = _build_wheel(tmp_path)
    assert wheel.stat().st_size < MAX_WHEEL_BYTES
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("mambapoc/recipes/demo.yaml", "mambapoc/recipes/pricing.yaml", "mambapoc/report/template.html",
                   "mambapoc/sample_data/models/mamba-tiny/model.safetensors", "mambapoc/kernels/__init__.py",
                   "mambapoc/sample_data/paper_icl_small/Mamba/model.safetensors"):
        assert needed in names

    env = _fresh_env(tmp_path)
    python = env / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-build-isolation", "-q",
          wheel], cwd=tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAMBAPOC_", "PYTHON"))}
    clean.update(HF_HUB_OFFLINE="1", PATH=f"{env / 'bin'}{os.pathsep}{clean.get('PATH', '')}")
    where = _run([python, "-c", "import mambapoc, mambapoc.resources as r; print(mambapoc.__file__); "
                  "print(r.models_dir())"], cwd=work, env=clean)
    assert str(ROOT) not in where and str(env) in where

    _run(["mambapoc", "demo", "--out", "runs/demo", *QUICK_DEMO], cwd=work, env=clean)
    report = work / "runs" / "demo" / "report"
    assert "mamba-tiny" in (report / "report.html").read_text(encoding="utf-8")
    assert (report / "report.pdf").read_bytes().startswith(b"%PDF")
    assert str(ROOT) not in (work / "runs" / "demo" / "config.yaml").read_text()

    out = _run(["mambapoc", "run", "recipes/paper-icl-small.yaml", "--out", "runs/paper",
                "--set", "eval.prompts=16", "--set", "probe.prompts=16"], cwd=work, env=clean)
    assert "Report:" in out
    results = json.loads((work / "runs" / "paper" / "results.json").read_text())
    assert set(results["models"]) == {"Transformer", "Mamba"}
