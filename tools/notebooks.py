"""Execute the tutorials and commit them with their outputs: ``make notebooks``.

    python tools/notebooks.py [notebooks/05_training.ipynb ...]   (default: every notebook)

Each notebook runs top to bottom in a fresh kernel, in a temporary folder (what it writes stays
out of the checkout), and is written back with its outputs and, in its metadata, the hash of its
code cells (:func:`code_hash`): ``tests/test_notebooks.py`` fails when a notebook's code changed
since it was executed (stale outputs) or an output holds an error. Figures are PNGs at
:data:`FIGURE_DPI`.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Figures in committed notebooks: 72 dpi keeps every figure readable on GitHub and the whole
# folder small (gluon-ssd's figures are sized in inches, so the DPI sets their pixels).
FIGURE_DPI = 72
METADATA_KEY = "gluon_ssd"  # notebook metadata: {"code_sha256": ..., "seconds": ...}


def code_hash(notebook) -> str:
    """SHA-256 of a notebook's code cells (their sources, in order)."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def execute(notebook, folder: str, timeout: int = 1200):
    """Run ``notebook`` in place (a fresh python3 kernel working in ``folder``), with the
    inline backend (not an ``MPLBACKEND`` of the caller, under which figures would not show)
    and figures at :data:`FIGURE_DPI` (a matplotlibrc in ``folder``)."""
    with open(os.path.join(folder, "matplotlibrc"), "w") as f:
        f.write(f"figure.dpi: {FIGURE_DPI}\n")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["MATPLOTLIBRC"] = folder
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": folder}})
    return client.execute(env=env)  # passed on to the kernel manager's start_kernel


def run(paths: Sequence[Path]) -> None:
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            execute(notebook, folder)
        seconds = time.perf_counter() - start
        notebook.metadata[METADATA_KEY] = {"code_sha256": code_hash(notebook),
                                           "seconds": round(seconds)}
        nbformat.write(notebook, path)
        print(f"{path.name}: executed in {seconds:.0f} s, "
              f"{path.stat().st_size / 2 ** 20:.1f} MB", flush=True)


if __name__ == "__main__":
    run([Path(p).resolve() for p in sys.argv[1:]] or NOTEBOOKS)
