"""The benchmark runs end to end: `python bench/benchmark.py --quick` at 64 px, 2 frames.

Budgets are tiny, so the numbers mean nothing; this only proves every measurement (render,
floor, iteration, convergence, sequence, naive reference, tables) still works after an
engine change. Numbers are the benchmark's business, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, _env

pytestmark = pytest.mark.slow


def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "benchmark.py"), "--quick", "--heights", "64", "--frames", "2",
         "--json", str(out)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text())["rows"]["64"]
    for phase in ("speed", "convergence", "sequence", "naive"):
        assert "error" not in row[phase], row[phase].get("error")
    assert row["sequence"]["quality"]["warping_error"] is not None
    assert "Targets (issue 4)" in result.stdout


def test_network_benchmark_runs(tmp_path: Path) -> None:
    """`bench/network.py` at tiny sizes: every row of its table is still measured (training,
    inference, FLOPs, quality on the demo shot and on a moving-object shot, hybrid, the
    100-frame extrapolation)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "network.py"), "--width", "64", "--height", "48",
         "--frames", "3", "--steps", "2", "--crop", "32", "--seeds", "1", "--scenes", "crossing",
         "--scene-seeds", "1", "--hybrid-height", "48", "--work", str(tmp_path)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    for row in ("network inference, s/frame", "network FLOPs per 1080p frame",
                "network: style loss / optimize's", "crossing: network: ghost ratio",
                "crossing: optimize: warping error / floor", "hybrid first frame, 48 px, seed 0",
                "100 frames 1080p: network"):
        assert row in table, f"{row!r} missing from the table:\n{table}"
