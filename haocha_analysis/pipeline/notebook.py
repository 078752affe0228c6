"""Executing a notebook with papermill: typed parameters, the project kernel, the kernel's noise filtered."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from haocha_analysis.core.config import (
    KERNEL_NAME,
    NOTEBOOKS_DIR,
    PROJ_ROOT,
)

log = logging.getLogger("haocha.pipeline")

# jsonschema (imported by nbformat, hence by papermill and nbconvert) imports rfc3987_syntax when it
# is installed, which compiles a grammar at import time (~0.9 s of CPU) for the "iri" string formats;
# the notebook schema uses none of them, so this process does without it (jsonschema skips a missing
# format checker).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

NOTEBOOK = NOTEBOOKS_DIR / "bulletin.ipynb"


# Kernel connection files live in the staging folder (removed with it), one per executed notebook:
# unit reports run several kernels at once in one staging folder.
KERNEL_CONNECTION_GLOB = ".kernel-*.json"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _notebook_failure(err: Exception) -> str:
    """The failing cell's error, as the user reads it."""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = _strip_ansi(str(getattr(err, "evalue", err)))
    count = getattr(err, "exec_count", None)
    tb = [_strip_ansi(line) for line in (getattr(err, "traceback", None) or [])]
    tail = "\n".join(line for line in "\n".join(tb).splitlines()[-12:] if line.strip())
    where = f"第 {count} 个执行单元" if count else "某个单元"
    return f"通报 notebook 在{where}出错：{ename}: {evalue}\n{tail}".rstrip()


# Notices Jupyter prints on every kernel start or stop that say nothing about the run: dropped.
KERNEL_NOISE = (
    "Kernel is running over TCP without encryption",
    "KeyboardInterrupt caught in kernel",
    "Use IPC transport or launch with kernel manager-provisioned CurveZMQ keys",
)


def _keep_stderr(sink: Any, path: Path | None) -> None:
    """What a kernel wrote on stderr (``sink``, a binary file), Jupyter's noise dropped.

    What remains goes to ``path`` (the run log of an unattended run) or to stderr (a terminal).
    """
    sink.seek(0)
    lines = sink.read().decode("utf-8", "replace").splitlines(keepends=True)
    kept = "".join(line for line in lines if not any(n in line for n in KERNEL_NOISE))
    if path is not None:  # the log exists even when everything was noise
        with open(path, "a", encoding="utf-8") as log_file:
            log_file.write(kept)
    elif kept:
        sys.stderr.write(kept)


@contextmanager
def _stderr_to(path: Path | None) -> Iterator[None]:
    """Capture file descriptor 2 (inherited by the kernel process), drop Jupyter's noise, keep the rest.

    What remains goes to ``path`` (the run log of an unattended run) or back to stderr (a terminal).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            _keep_stderr(sink, path)


# What the bulletin's kernel imports before the notebook's first cell (while the stages compute), so
# that the notebook stage spends its time on the notebook. Silent: no output, no execution count.
# The first chart's font loading included; nothing is left in the notebook's namespace.
WARM_UP = """
def _warm_up():
    import IPython.display
    import matplotlib.pyplot as plt

    import pandas as pd

    from haocha_analysis.bulletin import charts, render
    from haocha_analysis.core import reference
    from haocha_analysis.pipeline import run

    charts.setup()
    figure = plt.figure(figsize=(2, 1))
    figure.text(0.1, 0.5, "各区县评价数 0123456789%")
    charts.to_svg(figure)
    try:  # pandera imports and registers its backends on a first validation (the city's units)
        reference.UNITS_SCHEMA.validate(pd.DataFrame(), lazy=True)
    except Exception:
        pass


_warm_up()
del _warm_up
"""


class Kernel:
    """The project kernel, started ahead of the notebook that will run on it (one run, one kernel).

    The kernel starts and imports what the bulletin needs (:data:`WARM_UP`) on the other core while
    the stages compute; :func:`execute_notebook` then runs the notebook on it. Its stderr goes to a
    file of its own (the kernel outlives no run: :meth:`stop` in every case), filtered like the
    kernel's stderr of a notebook started without it.
    """

    def __init__(self, staging: Path, name: str = "bulletin") -> None:
        """Start the kernel; its connection file goes into the run's staging folder."""
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync  # works inside a running event loop too (a notebook)

        self._stderr = tempfile.TemporaryFile()
        self.manager = AsyncKernelManager(
            kernel_name=KERNEL_NAME, connection_file=str(Path(staging) / f".kernel-{name}.json")
        )
        run_sync(self.manager.start_kernel)(cwd=str(PROJ_ROOT), stderr=self._stderr)
        self._warm = None
        try:
            client = self.manager.blocking_client()
            client.start_channels()
            self._warm = client
            # Sent now, run by the kernel once it is up; the notebook's first cell queues behind it.
            client.execute(WARM_UP, silent=True, store_history=False)
        except Exception:  # warming up is an optimisation: a failure here shows in the notebook
            log.debug("kernel warm-up not sent", exc_info=True)

    def stop(self, log_file: Path | None = None, interactive: bool = False) -> None:
        """Shut the kernel down and keep what it wrote on stderr (filtered) in the run log."""
        from jupyter_core.utils import run_sync

        if self._warm is not None:
            self._warm.stop_channels()
        try:
            if self.manager.has_kernel:
                run_sync(self.manager.shutdown_kernel)(now=True)
        finally:
            _keep_stderr(self._stderr, None if interactive else log_file)
            self._stderr.close()


def execute_notebook(
    output: Path,
    parameters: dict[str, Any],
    interactive: bool,
    log_file: Path | None = None,
    *,
    notebook_path: Path | None = None,
    kernel: Kernel | None = None,
) -> None:
    """Execute a notebook with papermill: typed parameters, the project kernel, explicit cwd.

    The kernel's connection file goes beside ``output`` (the run's staging folder), not into the system
    temporary folder, so that a killed run's file goes with its staging folder.

    Args:
        output: the executed notebook to write.
        parameters: typed values for the ``parameters`` cell (never ``-p`` strings).
        interactive: show papermill's progress bar (a terminal).
        log_file: when not interactive, where the kernel's own stderr goes.
        notebook_path: the notebook to run (default: the bulletin's).
        kernel: a kernel started beforehand (:class:`Kernel`); None starts one for this notebook.
    """
    import papermill as pm
    from traitlets.config import Config

    if kernel is not None:
        # Its own stderr file is filtered when it stops; saved once at the end (the staging folder's).
        options, stderr = {"km": kernel.manager, "request_save_on_cell_execute": False}, nullcontext()
    else:
        config = Config()
        config.KernelManager.connection_file = str(Path(output).parent / f".kernel-{Path(output).stem}.json")
        options, stderr = {"config": config}, _stderr_to(None if interactive else log_file)
    with stderr, _prompt_client():
        pm.execute_notebook(
            str(notebook_path or NOTEBOOK),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(PROJ_ROOT),
            progress_bar=interactive,
            log_output=False,
            **options,
        )


# papermill's client (this process's main thread) handles several kernel messages per cell. While
# another thread of this process computes (the Word document is written beside the notebook), each
# message waits for the GIL up to the interpreter's switch interval (5 ms by default): measured, the
# bulletin's notebook took ~0.4 s longer beside a busy thread. During the notebook the interval is
# shortened so that the client answers promptly; the computing thread only yields more often.
NOTEBOOK_SWITCH_INTERVAL_S = 0.0001


@contextmanager
def _prompt_client() -> Iterator[None]:
    """Shorten the interpreter's thread switch interval while a notebook runs (restored after)."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(min(saved, NOTEBOOK_SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def _cell_durations(notebook: Path) -> list[dict]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    out = []
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if cell.cell_type == "code" and meta.get("duration") is not None:
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            out.append({"cell": i, "seconds": round(float(meta["duration"]), 3), "source": first[:80]})
    return out
