"""Packaging: top-level envs/ and planners/ install as genex.envs and genex.planners, nothing else leaks."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"genex": "genex", "envs": "genex.envs", "planners": "genex.planners"}


def _source_packages() -> set[str]:
    found = set()
    for folder, dotted in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


def test_pyproject_lists_every_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(cfg["packages"]) == _source_packages()
    assert cfg["package-dir"] == {"genex": "genex", "genex.envs": "envs", "genex.planners": "planners"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (whl,) = out.glob("genex-*.whl")
    return whl


def test_wheel_maps_folders_into_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "genex/envs/driving/env.py" in names
    assert "genex/envs/spec.py" in names
    assert "genex/planners/__init__.py" in names
    assert not any(n.startswith(("envs/", "planners/", "tests/")) for n in names), "generic top-level names leaked"


def test_installed_wheel_imports(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = (
        "import genex.envs, genex.planners, genex.envs.driving.env as e, importlib.util as u;"
        "print(e.__file__); print(u.find_spec('envs'))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env,
                         cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1] == "None"
