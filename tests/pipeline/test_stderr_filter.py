"""The kernel's stderr: Jupyter's start/stop notices dropped, anything else kept in the run log."""

from __future__ import annotations

import subprocess
import sys

from haocha_analysis.pipeline.notebook import KERNEL_NOISE, _stderr_to


def test_kernel_noise_is_dropped_and_the_rest_kept(tmp_path):
    log = tmp_path / "run.log"
    lines = [
        f"[IPKernelApp] WARNING | {KERNEL_NOISE[0]}. All communication",
        "真正的警告：缺少字体",
        KERNEL_NOISE[1],
    ]
    code = "import sys\nfor line in sys.argv[1:]:\n    print(line, file=sys.stderr)"
    with _stderr_to(log):
        subprocess.run([sys.executable, "-c", code, *lines], check=True)  # a child writes to fd 2
    assert log.read_text(encoding="utf-8") == "真正的警告：缺少字体\n"
