"""bench/bench_gpu.py runs end to end in its tiny CPU configuration and reports a rate per model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMAND = "bench/bench_gpu.py --images 64 --image-size 32 --steps 3 --models tnet --accelerator cpu"


def test_the_gpu_bench_reports_images_per_second_on_a_tiny_cpu_run(tmp_path):
    # The generated dataset is cached under XDG_CACHE_HOME: keep it in the test's directory.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *COMMAND.split()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = re.search(
        r"^tnet\s.*?\s([0-9.]+) images/s\s+([0-9.]+) min\s+float32 on cpu$",
        result.stdout,
        re.MULTILINE,
    )
    assert row, result.stdout
    assert float(row.group(1)) > 0 and float(row.group(2)) > 0
