"""`benchmarks/attention.py` runs end to end on short sequences and writes what the chapter plots.

Its figures are measurements, not assertions (the machine is noisy); this only makes sure the
script still runs against the current masters and writes a complete results file."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_attention_benchmark_runs_and_writes_every_method(tmp_path):
    out = tmp_path / "attention.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "attention.py"), "--lengths", "128", "256",
                          "--min-run-time", "0.02", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    methods = {(r["framework"], r["method"]) for r in result["rows"]}
    assert methods == {("torch", m) for m in ("naive", "tiled", "sdpa", "linear")} | {
        ("tf", m) for m in ("naive", "tiled", "linear")}
    assert {r["n"] for r in result["rows"]} == {128, 256}
    assert all(r["seconds"] > 0 for r in result["rows"])
    assert result["block"] == 256 and result["tf_block"] == 512
    assert "goals: not checked (n=4096 was not measured for every method)" in run.stdout
