"""Every notebook in notebooks/ executes end to end (nbclient), on the synthetic demo data.

The demo data is made once per session the way a user makes it: ``beltcurate synth`` ->
``ingest --site-from-path`` -> ``import-labels`` (the synthetic ground truth) -> ``score`` with
the demo detector checkpoint in models/. Notebooks read it through the usual settings
(``BELTCURATE_STATE_DIR``); FiftyOne uses the session's private mongod. Executed copies are
saved under test-output/notebooks/ for inspection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
DEMO_CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"
DEMO_FRAMES = 80
CELL_TIMEOUT_S = 900

pytestmark = [pytest.mark.fiftyone, pytest.mark.slow]


def _beltcurate(env: dict, cwd: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", "from curation.cli import main; main()", *args, "--json"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"beltcurate {' '.join(args)} failed:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory, fiftyone_env) -> dict:
    """Environment of a catalog with the synthetic demo data, labeled and scored by the demo detector."""
    root = tmp_path_factory.mktemp("notebook-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELTCURATE_")}
    env.update(
        BELTCURATE_STATE_DIR=str(root / "state"),
        BELTCURATE_REVIEW_MONGO_URI=fiftyone_env["FIFTYONE_DATABASE_URI"],
        BELTCURATE_REVIEW_DATABASE_NAME=fiftyone_env["FIFTYONE_DATABASE_NAME"],
        BELTCURATE_REVIEW_DATASET=f"notebooks-{uuid.uuid4().hex[:8]}",
        OMP_WAIT_POLICY="PASSIVE",
        MPLBACKEND="agg",
    )
    frames = root / "frames"
    _beltcurate(env, root, "synth", str(frames), "--frames", str(DEMO_FRAMES), "--seed", "11")
    _beltcurate(env, root, "ingest", str(frames / "images"), "--site-from-path")
    _beltcurate(env, root, "import-labels", str(frames / "annotations.json"), "--format", "coco", "--name", "synth")
    _beltcurate(env, root, "score", "--model", str(DEMO_CHECKPOINT))
    return env


def test_there_are_notebooks():
    assert any(path.name == "error_analysis.ipynb" for path in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_executes(path: Path, demo_env: dict, test_output: Path):
    notebook = _execute(path, demo_env, test_output)
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    assert any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_learning_curve_notebook_runs_its_own_tiny_simulation(test_output: Path):
    """With BELTCURATE_NOTEBOOK_TINY=1 the notebook trains, selects and evaluates a tiny simulation
    itself instead of reading benchmarks/results/ (a fresh clone without benchmark results)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELTCURATE_")}
    env.update(BELTCURATE_NOTEBOOK_TINY="1", OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="agg")
    notebook = _execute(REPO / "notebooks" / "active_learning_curves.ipynb", env, test_output,
                        saved_as="active_learning_curves-tiny.ipynb")
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "tiny simulation run by this notebook" in text and "complete: True" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "the learning curves are drawn"


def _execute(path: Path, env: dict, test_output: Path, saved_as: str | None = None):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)  # the kernel process inherits this environment
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        out_dir = test_output / "notebooks"
        out_dir.mkdir(exist_ok=True)
        nbformat.write(notebook, out_dir / (saved_as or path.name))
    return notebook
