"""Small file helpers shared by recorders and checkpoints."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Sequence

__all__ = ["atomic_write_bytes", "replace_folder", "sha256_file", "sha256_files"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one.

    Writes ``path.tmp``, flushes it to disk, then renames it over ``path``: an
    interruption leaves at most a stray ``.tmp`` file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_folder(new: str | Path, dest: str | Path) -> None:
    """Move the finished folder ``new`` to ``dest``, replacing it: ``dest`` is first renamed to ``dest.old`` (deleted
    at the end), so an interruption leaves the previous folder or the new one in place, never a mix."""
    new, dest = Path(new), Path(dest)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    os.replace(new, dest)
    if old.exists():
        shutil.rmtree(old)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: Sequence[str | Path]) -> str:
    """Hex SHA-256 over several files: each one's name and SHA-256, in the order given (a folder's digest)."""
    h = hashlib.sha256()
    for f in paths:
        h.update(Path(f).name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()
