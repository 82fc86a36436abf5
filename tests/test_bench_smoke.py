"""`scripts/bench.py --quick` runs end to end (a smoke run: CI never times it; speed lives in the script)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.timeout(900)
def test_bench_quick_runs_and_reports(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=850, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "pipeline limit" in p.stdout and "b/a =" in p.stdout and "peak RSS" in p.stdout
    r = json.loads(out.read_text())
    assert set(r["stages"]) == {"decode", "engine", "render", "encode"}
    assert all(v > 0 for v in r["stages"].values())
    assert r["book_fps"] > 0 and r["vidcam_fps"] > 0 and r["rss_short"] > 0 and r["rss_long"] > 0
    assert r["bound"] in r["stages"]
    assert set(r["cpu_ms"]) == set(r["stages"]) and all(v > 0 for v in r["cpu_ms"].values())
    assert r["budget_fps"] > 0 and 0 < r["budget_fraction"] and 0 < r["busy_cores_fraction"]
    assert r["decoded_ahead"] >= 0 and r["budget_fraction"] <= r["budget_fraction_all_frames"]
    assert r["startup"]["command"] > 0 and r["startup"]["import_tensorflow"] > 0
    assert r["repeats"] > 0  # the frozen half of the freeze clip reused results
    assert "start-up:" in p.stdout and "CPU budget" in p.stdout
