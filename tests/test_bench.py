"""The benchmarks run end to end in tiny configurations and report what their READMEs describe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GPU_BENCH = (
    "bench/bench_gpu.py images=400 image_size=32 batch_size=8 workers=1 steps=3 models=[tnet] "
    "accelerator=cpu"
)
LOADER_BENCH = "bench/bench_loader.py images=64 rounds=1 baseline_images=32 batch_size=16"
DETECTOR_BENCH = "bench/bench_detectors.py images=4 detectors=[haar-30] side=256"


def run_bench(command: str, cache: Path, program: str = sys.executable, timeout: int = 300) -> str:
    """The output of `program COMMAND` run from the repository (a bench script: Python's, or
    bash for a shell script)."""
    # The generated dataset is cached under XDG_CACHE_HOME: keep it in the test's directory.
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1"}
    env["PYTHON"] = sys.executable
    result = subprocess.run(
        [program, *command.split()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_gpu_bench_reports_images_per_second_on_a_tiny_cpu_run(tmp_path):
    stdout = run_bench(GPU_BENCH, tmp_path)
    row = re.search(
        r"^tnet\s.*?\s([0-9.]+) images/s\s+([0-9.]+) min\s+float32 on cpu$",
        stdout,
        re.MULTILINE,
    )
    assert row, stdout
    assert float(row.group(1)) > 0 and float(row.group(2)) > 0


@pytest.mark.slow
def test_the_gpu_bench_times_a_timm_model(tmp_path):
    stdout = run_bench(GPU_BENCH.replace("models=[tnet]", "models=[timm:test_resnet]"), tmp_path)
    assert re.search(r"^timm:test_resnet\s.*? ([0-9.]+) images/s", stdout, re.MULTILINE), stdout


def test_the_detector_bench_reports_images_per_second_and_faces_found(tmp_path):
    stdout = run_bench(DETECTOR_BENCH, tmp_path)
    row = re.search(r"^haar-30\s+([0-9.]+)\s+([0-9.]+) / ([0-9.]+)$", stdout, re.MULTILINE)
    assert row, stdout
    assert float(row.group(1)) > 0


def test_a_bench_mistake_is_one_line_and_exit_status_2(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    for command, message in (
        ("bench/bench_gpu.py steps=0", "error: warmup and steps must be at least 1\n"),
        ("bench/bench_loader.py --images 64", "error: expected key=value, got '--images'; "),
    ):
        result = subprocess.run(
            [sys.executable, *command.split()], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_the_loader_bench_reports_its_targets_and_the_index_load(tmp_path):
    stdout = run_bench(LOADER_BENCH, tmp_path)
    number = r"([0-9.]+) \([0-9.]+-[0-9.]+\)"
    targets = (
        r"\(c\)/\(b\), target >= 5",
        r"\(c\)/\(a2\), target >= 0.7",
        r"\(c\)/\(a3\), the stricter ceiling",
    )
    for target in targets:
        row = re.search(rf"^{target}\s+{number}\s+{number}$", stdout, re.MULTILINE)
        assert row, stdout
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0
    index = re.search(r"^index of 287,651 entries: load ([0-9.]+)s", stdout, re.MULTILINE)
    assert index and float(index.group(1)) > 0, stdout


def test_the_crops_bench_compares_the_two_layouts_on_the_same_faces(tmp_path):
    stdout = run_bench("bench/bench_crops.py images=32 size=48 rounds=1 batch_size=8", tmp_path)
    number = r"([0-9.]+) \([0-9.]+-[0-9.]+\)"
    for target in (r"\(c\)/\(n\), target >= 0.8", r"\(p\)/\(n1\): cutting while decoding"):
        row = re.search(rf"^{target}\s+{number}$", stdout, re.MULTILINE)
        assert row and float(row.group(1)) > 0, stdout


def test_the_stats_bench_times_the_intervals(tmp_path):
    stdout = run_bench("bench/bench_stats.py samples=3000 resamples=40", tmp_path)
    timing = re.search(r"^40 resamples of 3,000 samples.*: ([0-9.]+) s", stdout, re.MULTILINE)
    assert timing and float(timing.group(1)) > 0, stdout
    assert re.search(r"^acc 0\.\d+ \[0\.\d+, 0\.\d+\]$", stdout, re.MULTILINE), stdout


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_the_cpu_in_its_tiny_mode(tmp_path):
    """`bash bench/gpu_check.sh --tiny` (about 2 minutes on 2 cores: slow): a table row per
    variant, and a note for each option the config lacks."""
    report = tmp_path / "check.md"
    run_bench(f"bench/gpu_check.sh --tiny --out {report}", tmp_path, program="bash", timeout=600)
    text = report.read_text()
    assert "- torch: " in text and "| row | model | images/s |" in text
    assert re.search(r"^\| tnet \| tnet \| [0-9]+ \| 8 \| threads x 1 \|", text, re.MULTILINE), text
    assert re.search(
        r"^\| compiled \| tnet \| [0-9]+ .*\| 1 \| 0 \| float32 on cpu \|$", text, re.M
    )
    for row in ("decoded cache", "device augmentation"):  # run, or skipped with a note
        assert re.search(
            rf"^\| {row} \| tnet \| ([0-9]+|skipped: no \S+ in the config) \|", text, re.M
        )


@pytest.mark.slow
def test_the_cache_bench_reports_its_target_and_the_store_build(tmp_path):
    stdout = run_bench(
        "bench/bench_cache.py images=64 rounds=1 batch_size=16 sizes=[112] build_samples=100",
        tmp_path,
    )
    target = re.search(
        r"^target \(f\)/\(a2\) >= 3 at 112 px: (met|NOT met) \(([0-9.]+)\)$", stdout, re.M
    )
    assert target and float(target.group(2)) > 0, stdout
    assert re.search(
        r"^store of 300 samples at 112 px: .* AffectNet's 287,651: 10\.8 GB", stdout, re.M
    )


@pytest.mark.slow
def test_the_overhead_bench_reports_the_ratio(tmp_path):
    stdout = run_bench(
        "bench/bench_overhead.py models=[tnet] sizes=[32] rounds=1 steps=2 warmup=1 batch_size=8",
        tmp_path,
    )
    row = re.search(r"^tnet\s+32\s+([0-9]+)\s.*\s([0-9.]+) \([0-9.]+-[0-9.]+\)$", stdout, re.M)
    assert row and float(row.group(2)) > 0, stdout
