"""The notebooks in ``notebooks/`` run end to end (small setting) and are stored without outputs.

Each notebook is executed by nbclient in a fresh kernel of *this* interpreter (a kernelspec
written to a temporary folder, so nothing global is installed or read), with
``PRIME_JAX_NOTEBOOK_SMALL=1`` and one CPU device (as on a single-chip runtime), in a temporary
working directory that receives its ``runs/``.
"""

import json
import os
import pathlib
import sys
import time

import nbformat
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ("01_quickstart.ipynb", "02_implicit_rewards.ipynb", "03_qwen_on_single_chip_tpu.ipynb")
CELL_TIMEOUT_S = 900


def test_the_notebooks_are_there():
    assert tuple(p.name for p in NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has stored outputs"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "PRIME_JAX_NOTEBOOK_SMALL" in first_code.source, "the first code cell holds the SMALL switch"


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """A kernelspec "python3" that runs this interpreter, in a private kernel folder."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / "python3"
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (prime_jax tests)", "language": "python"}))
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return lambda: KernelManager(kernel_name="python3", kernel_spec_manager=spec_manager)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One working directory for all notebooks (02 reuses the run 01 leaves in runs/)."""
    return tmp_path_factory.mktemp("notebook_cwd")


def kernel_env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device, like a single-chip runtime (conftest asks for 8)
    env.update(PRIME_JAX_NOTEBOOK_SMALL="1", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="agg",
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_the_small_setting(path, kernel_manager_factory, workdir):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, km=kernel_manager_factory(), timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(workdir)}}, allow_errors=False)
    start = time.time()
    client.execute(env=kernel_env(), cwd=str(workdir))
    print(f"{path.name}: {time.time() - start:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} displayed no picture"
