"""Run the tutorial notebooks headless (nbclient), small for CI or full size to refresh their outputs.

Every notebook in ``notebooks/`` has a *parameters* cell (tagged ``parameters``) that reads
``GENEX_NOTEBOOK_SMALL``: ``1`` makes it run small (what CI runs, about a minute each on 2 CPU
cores); unset, it runs at the size whose outputs are committed. Notebooks run with their own
folder as the working directory, like Jupyter does.

    python -m genex.notebooks --small notebooks/*.ipynb        # check: run small, write nothing
    python -m genex.notebooks --inplace notebooks/01_*.ipynb   # refresh the committed outputs

Needs the ``dev`` extra (``nbclient``, ``nbformat``, ``ipykernel``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["run_notebook", "main"]

SMALL_ENV = "GENEX_NOTEBOOK_SMALL"


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(path: str | Path, small: bool = True, inplace: bool = False, timeout: int = 900,
                 kernel: str = "python3") -> float:
    """Execute ``path`` top to bottom; returns the wall time in seconds.

    Raises ``nbclient.exceptions.CellExecutionError`` (with the failing cell's traceback) when a
    cell fails. ``inplace`` writes the executed notebook (outputs included) back to ``path``.
    The kernel inherits this process's environment (plus ``GENEX_NOTEBOOK_SMALL``), so it runs
    with the same Python and the same ``MUJOCO_GL``.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ValueError(f"{path}: no cell tagged 'parameters' (the cell that reads {SMALL_ENV})")
    t0 = time.perf_counter()
    with _env(**{SMALL_ENV: "1" if small else "0", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
                 "MPLBACKEND": "module://matplotlib_inline.backend_inline"}):
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        client.execute()
    seconds = time.perf_counter() - t0
    if inplace:
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genex.notebooks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="+", help="notebook files")
    p.add_argument("--small", action="store_true", help=f"run small ({SMALL_ENV}=1), as CI does")
    p.add_argument("--inplace", action="store_true", help="write the outputs back into the notebook files")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = p.parse_args(argv)
    failed = 0
    for nb in args.notebooks:
        try:
            s = run_notebook(nb, small=args.small, inplace=args.inplace, timeout=args.timeout)
            print(f"{nb}: ok in {s:.1f} s", flush=True)
        except Exception as e:  # report every notebook, then fail
            failed += 1
            print(f"{nb}: FAILED: {type(e).__name__}: {str(e)[-3000:]}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
