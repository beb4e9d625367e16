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
