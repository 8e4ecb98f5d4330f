"""`benchmarks/attention.py` runs end to end on short sequences and writes what the chapter plots.

Its figures are measurements, not assertions (the machine is noisy); this only makes sure the
script still runs against the current masters and writes a complete results file."""
import json
import statistics
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
    # every point is the median of at least 5 timed calls, whose range the file keeps
    assert result["repeats"] == 5
    for r in result["rows"]:
        assert len(r["timings"]) >= 5, r
        assert r["seconds"] == statistics.median(r["timings"]), r
        assert (r["seconds_min"], r["seconds_max"]) == (min(r["timings"]), max(r["timings"])), r
    assert result["block"] == 256 and result["tf_block"] == 256
    assert result["paired"] == {}                  # the side-by-side rounds run only where n = 4096 is measured
    assert "goals: not checked (n=4096 was not measured for every method)" in run.stdout
    assert "(median of " in run.stdout


def _benchmark_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("attention_benchmark", ROOT / "benchmarks" / "attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_side_by_side_rounds_alternate_which_call_goes_first():
    bench = _benchmark_module()
    calls = []
    methods = {(fw, m): (lambda *args, fw=fw, m=m: calls.append((fw, m)) or args[0])
               for fw in ("torch", "tf") for m in ("naive", "tiled", "sdpa")}
    bench.finish = lambda framework, out: None
    paired = bench.paired_ratios(methods, lambda n: {"torch": [1, 2, 3], "tf": [1, 2, 3]})
    assert set(paired) == {"torch", "tf"} and all(len(r) == bench.PAIRED_ROUNDS for r in paired.values())
    rounds = bench.PAIRED_ROUNDS
    def order(fw, ref):
        return [c for i in range(rounds) for c in (((fw, "tiled"), (fw, ref)) if i % 2 == 0 else ((fw, ref), (fw, "tiled")))]
    assert calls == order("torch", "sdpa") + order("tf", "naive")


def test_the_goals_use_the_side_by_side_medians_when_there_are_any():
    bench = _benchmark_module()
    rows = [{"framework": fw, "method": m, "n": 4096, "seconds": s, "peak_bytes": b}
            for fw, m, s, b in (("torch", "naive", 0.6, 1000), ("torch", "tiled", 0.2, 50), ("torch", "sdpa", 0.17, 9),
                                ("tf", "naive", 0.8, 1000), ("tf", "tiled", 0.9, 200))]
    from_sweep = "\n".join(bench.goals({"rows": rows}))
    assert "= 0.85 (goal >= 0.8: met, from the sweep's medians)" in from_sweep          # 0.17 / 0.2
    assert "= 0.89 (goal >= 1: NOT met, from the sweep's medians)" in from_sweep        # 0.8 / 0.9
    assert "= 0.200 (goal <= 0.125: NOT met)" in from_sweep                   # tf memory 200 / 1000
    paired = {"torch": [0.75, 0.78, 0.75, 0.82, 0.81, 0.79, 0.85], "tf": [1.1, 1.2, 1.3, 1.0, 1.2, 1.1, 1.2]}
    side_by_side = "\n".join(bench.goals({"rows": rows, "paired": paired}))
    assert "= 0.79 (goal >= 0.8: NOT met, median of 7 alternating rounds, 0.75-0.85)" in side_by_side
    assert "= 1.20 (goal >= 1: met, median of 7 alternating rounds, 1.00-1.30)" in side_by_side


def test_the_cpu_clock_leaves_out_the_time_spent_waiting():
    """--clock cpu times the process's CPU time: a call that only waits (here: sleeps, as a call
    waiting for a busy core does) costs nothing on it, and its full length on the wall clock."""
    import time

    bench = _benchmark_module()
    def sleepy():
        time.sleep(0.05)
        return None
    try:
        bench.clock = bench.CLOCKS["wall"]
        wall = bench.timings("torch", sleepy, (), repeats=5, min_run_time=0)
        bench.clock = bench.CLOCKS["cpu"]
        cpu = bench.timings("torch", sleepy, (), repeats=5, min_run_time=0)
    finally:
        bench.clock = bench.CLOCKS["wall"]
    assert len(wall) == len(cpu) == 5
    assert min(wall) >= 0.05 and max(cpu) < 0.01, (wall, cpu)
