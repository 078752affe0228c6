"""The installed wheel makes the bulletin outside the checkout (reference data, notebooks shipped)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from haocha_analysis.core.config import PACKAGE_DIR
from tests.e2e.test_golden import expected_annex

ROOT = PACKAGE_DIR.parent


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_installed_wheel_makes_the_bulletin_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ]
    )
    (wheel,) = wheels.glob("haocha-*.whl")
    # A fresh venv without the checkout; its dependencies come from this environment's site-packages
    # (a .pth path line: the editable install's own .pth files there are not processed).
    venv = tmp_path / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    site = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    (site / "haocha-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)])
    _run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "haocha"])
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HAOCHA_HOME", "PYTHONPATH")}
    # The dependencies' data files (nbconvert's templates) live under this environment's prefix; only
    # those are lent (not its kernels: the notebook must run on the wheel's own "haocha" kernel).
    lent = tmp_path / "jupyter"
    lent.mkdir()
    (lent / "nbconvert").symlink_to(Path(sys.prefix) / "share" / "jupyter" / "nbconvert")
    env["JUPYTER_PATH"] = str(lent)
    located = _run(
        [str(py), "-c", "import haocha_analysis; print(haocha_analysis.__file__)"], cwd=work, env=env
    )
    assert str(venv) in located.stdout and str(ROOT) not in located.stdout
    _run(
        [str(venv / "bin" / "haocha"), "bulletin", "--city", "zibo", "--period", "2023Q2"],
        cwd=work,
        env={**env, "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"},
        timeout=900,
    )
    out = work / "reports" / "zibo" / "2023Q2"
    kernel = _run([str(py), "-m", "jupyter_client.kernelspecapp", "list"], cwd=work, env=env).stdout
    assert str(venv) in next(line for line in kernel.splitlines() if line.split()[:1] == ["haocha"])
    for name in ("bulletin.html", "bulletin.pdf", "annex1_districts.csv", "manifest.json"):
        assert (out / name).is_file(), name
    got = pd.read_csv(out / "annex1_districts.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    pd.testing.assert_frame_equal(got, expected_annex("annex1_districts"))
