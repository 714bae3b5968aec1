"""Every tutorial notebook runs top to bottom, small (``GENEX_NOTEBOOK_SMALL=1``), from a fresh clone.

Each is a whole-workflow test: it fails if any cell raises. The committed copies carry the outputs of a
full-size run; CI only checks that they still run (nothing is written back).
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from genex.notebooks import run_notebook  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CI_BUDGET_S = 180  # the cap per notebook on 2 CPU cores


def test_there_are_five_notebooks_with_outputs_and_parameters():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be 'parameters'"
        assert "GENEX_NOTEBOOK_SMALL" in code[0].source
        images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
        errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert images >= 2 and not errors, f"{path.name}: commit it executed (python -m genex.notebooks --inplace)"
        assert path.stat().st_size < 3_000_000, f"{path.name} is {path.stat().st_size} bytes: keep figures small"


@pytest.mark.slow
@pytest.mark.timeout(2 * CI_BUDGET_S)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_small(path):
    seconds = run_notebook(path, small=True, inplace=False, timeout=CI_BUDGET_S)
    print(f"{path.name}: {seconds:.1f} s")
