"""genex.checkpoints: one loader for every checkpoint folder, one error family for world models and policies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import genex.policy
import genex.world_model
from genex.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    CorruptCheckpointError,
    checkpoint_format,
    load_checkpoint,
)
from genex.policy.tokenizer import TokenizerMismatchError

ROOT = Path(__file__).resolve().parents[1]
WM = ROOT / "checkpoints" / "world_model" / "driving"
POLICY = ROOT / "checkpoints" / "policy" / "tiny-driving"


def test_one_error_family():
    assert genex.world_model.CheckpointError is CheckpointError is genex.policy.CheckpointError
    assert genex.world_model.CorruptCheckpointError is CorruptCheckpointError
    assert genex.world_model.CheckpointMismatchError is CheckpointMismatchError
    assert issubclass(TokenizerMismatchError, CheckpointMismatchError) and issubclass(CheckpointError, ValueError)


def test_load_checkpoint_dispatches_on_the_format():
    from genex.policy.tiny import TinyPolicy
    from genex.world_model.model import DiffusionWorldModel

    assert checkpoint_format(WM) == "genex-world-model" and checkpoint_format(POLICY) == "genex-tiny-vlm"
    assert isinstance(load_checkpoint(WM, device="cpu"), DiffusionWorldModel)
    assert isinstance(load_checkpoint(POLICY), TinyPolicy)


def test_bad_folders_raise_checkpoint_errors_that_name_them(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CorruptCheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="genex-world-model"):
        load_checkpoint(tmp_path)
    # a policy folder with a truncated weights file: the policy loader's error is in the same family
    broken = tmp_path / "policy"
    shutil.copytree(POLICY, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        load_checkpoint(broken)


def _import_graph() -> dict[str, set[str]]:
    """genex's modules and the genex modules each imports (at any level, lazy imports included)."""
    import ast

    roots = {"genex": ROOT / "genex", "genex.envs": ROOT / "envs", "genex.planners": ROOT / "planners"}
    files = {}
    for pkg, folder in roots.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            files[".".join([pkg, *parts])] = f
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
                mod = ".".join(base[:len(base) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                    else (node.module or "")
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in files]
                deps.update(subs if len(subs) == len(node.names) else [mod, *subs])
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def test_no_import_cycles():
    """No module of genex imports, directly or through others, a module that imports it (lazy imports count)."""
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(w):] + [w]))
            if w not in state:
                visit(w)
        path.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v)
