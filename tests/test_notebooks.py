"""Every notebook runs top to bottom, so none of them rots.

The notebooks are run at small sizes: each keeps its sizes (data, ensembles, grids, horizons)
in one cell tagged ``parameters``, and the test runs `SMALL`'s assignments right after that
cell.  The notebooks of one test process share one kernel (its imports and compiled
programs), with the namespace reset before each notebook.
"""

import ast
import pathlib

import nbclient
import nbformat
import pytest
from jupyter_core.utils import run_sync

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
#: Seconds one cell may take.
CELL_TIMEOUT = 300
#: Per notebook, the small sizes the test runs it at (assignments to names of its parameters cell).
SMALL = {
    "networks": "T_LIN, T_NET, T_EOS, SAVES = 3.0, 3.0, 100.0, 8",
    "sgd_stability": "BATCH_SIZES = (1, 8)",
}


def _assigned(source):
    """Names a cell assigns at its top level."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def small_version(notebook, stem):
    """``notebook`` with `SMALL`'s cell after its parameters cell and a first cell that resets
    the shared kernel (namespace, figures) without leaving a name behind."""
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if "parameters" in cell.metadata.get("tags", []) and stem in SMALL:
            unknown = _assigned(SMALL[stem]) - _assigned(cell.source)
            assert not unknown, f"{stem}: SMALL sets {sorted(unknown)}, which its parameters cell does not define"
            cells.append(nbformat.v4.new_code_cell(SMALL[stem]))
    assert stem not in SMALL or len(cells) > len(notebook.cells), f"{stem}.ipynb has no cell tagged 'parameters'"
    reset = nbformat.v4.new_code_cell('%reset -f\n__import__("matplotlib.pyplot").pyplot.close("all")')
    return nbformat.v4.new_notebook(cells=[reset, *cells], metadata=notebook.metadata)


class SharedKernel:
    """One kernel for the notebooks of a test process, restarted after a notebook fails."""

    def __init__(self, cwd):
        self.cwd, self.client = str(cwd), None

    def run(self, notebook):
        if self.client is None:
            self.client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                                  resources={"metadata": {"path": self.cwd}})
        self.client.nb = notebook
        try:
            self.client.execute(cleanup_kc=False)
        except BaseException:
            self.close()
            raise
        return notebook

    def close(self):
        client, self.client = self.client, None
        if client is not None and client.km is not None:
            if client.kc is not None:
                client.kc.stop_channels()
            run_sync(client.km.shutdown_kernel)(now=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    shared = SharedKernel(tmp_path_factory.mktemp("notebooks"))
    yield shared
    shared.close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel):
    notebook = kernel.run(small_version(nbformat.read(path, as_version=4), path.stem))
    images = sum("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", []))
    assert images >= 1, f"{path.name} drew no figure"


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name


def test_small_sizes_name_parameters_of_their_notebook():
    stems = {path.stem for path in NOTEBOOKS}
    assert set(SMALL) <= stems, sorted(set(SMALL) - stems)
    for path in NOTEBOOKS:
        if path.stem in SMALL:
            small_version(nbformat.read(path, as_version=4), path.stem)
