"""The bulletin's kernel started ahead of its notebook: same notebook, nothing left behind."""

from __future__ import annotations

import json

import nbformat

from haocha_analysis.pipeline.notebook import Kernel, execute_notebook


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('label: str = "默认"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [
        parameters,
        nbformat.v4.new_code_cell("import sys\nprint(label, file=sys.stderr)"),
        nbformat.v4.new_code_cell(
            "sorted(n for n in dir() if 'warm' in n or n in ('charts', 'render', 'run'))"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "haocha", "display_name": "haocha", "language": "python"}
    nbformat.write(nb, path)
    return path


def _cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c.get("execution_count"), c.get("outputs")) for c in nb["cells"] if c["cell_type"] == "code"]


def test_a_kernel_started_beforehand_runs_the_notebook_as_a_fresh_one(tmp_path):
    source = _notebook(tmp_path / "in.ipynb")
    fresh, ahead = tmp_path / "fresh", tmp_path / "ahead"
    fresh.mkdir(), ahead.mkdir()
    execute_notebook(fresh / "out.ipynb", {"label": "一"}, False, fresh / "run.log", notebook_path=source)
    kernel = Kernel(ahead, name="out")
    assert list(ahead.glob(".kernel-out.json"))  # its connection file in the staging folder
    try:
        execute_notebook(
            ahead / "out.ipynb",
            {"label": "一"},
            False,
            ahead / "run.log",
            notebook_path=source,
            kernel=kernel,
        )
    finally:
        kernel.stop(ahead / "run.log")
    assert not kernel.manager.has_kernel
    # The warm-up is silent: execution counts from 1, no output, no name left in the namespace.
    assert _cells(ahead / "out.ipynb") == _cells(fresh / "out.ipynb")
    assert "".join(_cells(ahead / "out.ipynb")[-1][1][0]["data"]["text/plain"]) == "[]"
    assert "一" in json.dumps(
        _cells(ahead / "out.ipynb")[2][1], ensure_ascii=False
    )  # the parameter given (cell 1: papermill's own)
    # The kernel's own stderr (filtered as _stderr_to filters it) ends in the run log: it exists.
    assert (ahead / "run.log").exists()


def test_a_kernel_stopped_without_a_notebook_leaves_no_process(tmp_path):
    kernel = Kernel(tmp_path)
    process = kernel.manager.provisioner.process
    kernel.stop(tmp_path / "run.log")
    assert process.poll() is not None and not kernel.manager.has_kernel


def test_a_kernel_starts_and_stops_inside_a_running_event_loop(tmp_path):
    import asyncio

    async def from_a_notebook_cell() -> bool:  # build_bulletin called in Jupyter runs inside a loop
        kernel = Kernel(tmp_path)
        started = kernel.manager.has_kernel
        kernel.stop(tmp_path / "run.log")
        return started and not kernel.manager.has_kernel

    assert asyncio.run(from_a_notebook_cell())
