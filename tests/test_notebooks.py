"""The tutorials: every ``notebooks/*.ipynb`` runs top to bottom (from its source cells, new
notebooks picked up automatically), and what is committed is what running gives: each notebook
was executed (``make notebooks``) since its code last changed, holds no error output, and the
folder stays small enough to browse."""
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from notebooks import METADATA_KEY, NOTEBOOKS, code_hash, execute  # noqa: E402

MAX_FOLDER_MB = 15


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    """Runs in a temporary folder, so whatever a notebook writes stays out of the checkout."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # from the source cells, not the committed outputs
        if cell.cell_type == "code":
            cell.outputs = []
    execute(notebook, str(tmp_path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_are_fresh_and_without_errors(path):
    notebook = nbformat.read(path, as_version=4)
    recorded = notebook.metadata.get(METADATA_KEY, {}).get("code_sha256")
    assert recorded == code_hash(notebook), (
        f"{path.name}: its outputs are stale (its code changed since it was executed); run "
        f"`make notebooks`")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: an output is an error: {errors[0].get('ename')}"
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name}: no figure"


def test_the_notebooks_folder_stays_small():
    total = sum(p.stat().st_size for p in NOTEBOOKS)
    assert total < MAX_FOLDER_MB * 2 ** 20, f"notebooks/ holds {total / 2 ** 20:.1f} MB"
