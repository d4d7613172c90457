"""Every notebook in notebooks/ runs as shipped, at a small scale.

Each notebook has one cell tagged ``parameters``; the test appends a cell that
sets ``SCALE = "small"`` right after it (as papermill would), then executes the
whole notebook with nbclient. A notebook that breaks fails CI.
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def with_small_scale(nb):
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            nb.cells.insert(i + 1, nbformat.v4.new_code_cell('SCALE = "small"'))
            return nb
    raise AssertionError("notebook has no cell tagged 'parameters'")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    nb = with_small_scale(nbformat.read(path, as_version=4))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        out for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "error"
    ]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_small_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert path.stat().st_size < 200_000
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name} stores outputs"
