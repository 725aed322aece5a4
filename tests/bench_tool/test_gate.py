"""The benchmark regression gate (bench/gate.py): ratios, margins, verdicts and the report."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "bench" / "gate.py")
gate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gate  # dataclasses look their module up there
_spec.loader.exec_module(gate)

FIG = gate.Figure("demo.put", "demo: put vs raw", "t.py::test_put#pykv", "t.py::test_put#reference",
                  quick=True)
TIMED = gate.Figure("demo.timed", "demo: times", "t.py::test_a#median", "t.py::test_b#median", quick=True)
RATIO = gate.Figure("demo.ratio", "demo: a ratio already", "t.py::test_put#ratio", quick=True)


def _bench(median: float = 1.0, **extra) -> dict:
    return {"stats": {"median": median}, "extra_info": extra}


def _baseline(ratio: float, margin: float = 0.3, gated: bool = True) -> dict:
    return {"ratio": ratio, "margin": margin, "gated": gated, "recorded": "2026-11-24", "what": "x"}


def test_ratio_reads_rates_and_inverts_median_times():
    benchmarks = {"t.py::test_put": _bench(pykv=300.0, reference=1200.0, ratio=0.4),
                  "t.py::test_a": _bench(median=2e-6), "t.py::test_b": _bench(median=1e-6)}
    assert gate.ratio_of(FIG, benchmarks) == pytest.approx(0.25)
    assert gate.ratio_of(TIMED, benchmarks) == pytest.approx(0.5)  # twice as slow
    assert gate.ratio_of(RATIO, benchmarks) == pytest.approx(0.4)


def test_a_test_that_did_not_run_gives_no_ratio_but_a_missing_key_is_an_error():
    assert gate.ratio_of(FIG, {}) is None
    with pytest.raises(gate.GateError, match="recorded no 'reference'"):
        gate.ratio_of(FIG, {"t.py::test_put": _bench(pykv=1.0)})


@pytest.mark.parametrize("ratios, verdict", [
    ([0.26, 0.24], "ok"),                      # within the margin
    ([0.18, 0.17], "FAIL"),                    # fell 30%+ below 0.25 -> below 0.175
    ([0.40, 0.41], "better: re-record?"),      # rose beyond the margin
    ([], "skipped"),
])
def test_judge_fails_only_a_fall_beyond_the_margin(ratios, verdict):
    v = gate.judge(FIG, ratios, _baseline(0.25, margin=0.3))
    assert v.verdict == verdict


def test_judge_uses_the_median_of_the_runs():
    # One bad run out of three does not fail the gate; the median decides.
    v = gate.judge(FIG, [0.05, 0.25, 0.26], _baseline(0.25, margin=0.3))
    assert v.verdict == "ok" and v.now == 0.25


def test_an_ungated_figure_is_watched_and_never_fails():
    v = gate.judge(FIG, [0.01], _baseline(0.25, gated=False))
    assert v.verdict == "watch (fell)"
    assert gate.judge(FIG, [0.2], None).verdict == "no baseline"


def test_margin_comes_from_the_spread_with_floor_and_ceiling():
    quick = gate.MODES["quick"]
    assert gate.margin_from_spread([1.0, 1.0, 1.0], quick) == (quick.margin_floor, True)
    # Distances from the median 1.0: 0, 0.2, 0.25 -> the second largest, 0.2, times 3.
    margin, gated = gate.margin_from_spread([0.8, 1.0, 1.25], quick)
    assert margin == pytest.approx(0.6) and gated
    margin, gated = gate.margin_from_spread([0.5, 1.0, 1.5], quick)
    assert margin == quick.margin_ceiling and not gated


def test_a_noisy_past_recording_keeps_the_margin_wide():
    quick = gate.MODES["quick"]
    quiet = [1.0, 1.01, 0.99, 1.0, 1.0]
    assert gate.margin_from_spread(quiet, quick) == (quick.margin_floor, True)
    assert gate.margin_from_spread(quiet, quick, past_spreads=[0.01, 0.3]) == (
        quick.margin_ceiling, False)


def test_recording_carries_the_last_spreads_forward(monkeypatch, tmp_path):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps({"quick": {"settings": {}, "figures": {"demo.put": {
        "ratio": 0.5, "runs": [0.5], "margin": 0.5, "gated": True, "spreads": [0.4, 0.3, 0.2, 0.1]}}}}))
    _fake_suites(monkeypatch, [0.50, 0.50, 0.50, 0.50, 0.50])
    assert gate.main(["--quick", "--record", "--baselines", str(path), "--log", str(tmp_path / "log")]) == 0
    entry = json.loads(path.read_text())["quick"]["figures"]["demo.put"]
    assert entry["spreads"] == [0.3, 0.2, 0.1, 0.0]  # the oldest of the 4 kept drops out
    assert entry["margin"] == gate.MODES["quick"].margin_ceiling and entry["gated"] is False


def test_recording_some_figures_keeps_the_baselines_of_the_others(monkeypatch, tmp_path):
    path = tmp_path / "baselines.json"
    kept = {"ratio": 0.25, "runs": [0.25], "margin": 0.5, "gated": True, "spreads": [0.1]}
    path.write_text(json.dumps({"quick": {"settings": {}, "figures": {
        "demo.put": {"ratio": 0.9, "runs": [0.9], "margin": 0.5, "gated": True, "spreads": []},
        "demo.timed": kept, "gone.figure": kept}}}))
    _fake_suites(monkeypatch, [0.50, 0.50, 0.50, 0.50, 0.50])
    monkeypatch.setattr(gate, "FIGURES", [FIG, TIMED])
    assert gate.main(["--quick", "--record", "--only", "demo.put", "--baselines", str(path),
                      "--log", str(tmp_path / "log")]) == 0
    figures = json.loads(path.read_text())["quick"]["figures"]
    assert figures["demo.put"]["ratio"] == 0.5   # measured anew
    assert figures["demo.timed"] == kept         # not measured: kept as it was
    assert "gone.figure" not in figures          # no longer a figure of the gate


def test_one_outlier_while_recording_does_not_widen_the_margin():
    quick = gate.MODES["quick"]
    assert gate.margin_from_spread([0.107, 0.106, 0.103, 0.103, 0.0511], quick) == (
        quick.margin_floor, True)


def test_report_names_the_failing_figure_and_its_numbers():
    verdicts = [gate.judge(FIG, [0.15, 0.16, 0.14], _baseline(0.25)),
                gate.judge(TIMED, [0.5, 0.5, 0.5], _baseline(0.5))]
    text = gate.render(verdicts, gate.MODES["quick"], [])
    header = text.splitlines()[2]
    for column in ("figure", "baseline", "now", "runs (3)", "change", "margin", "verdict"):
        assert column in header
    assert "0.15 0.16 0.14" in text  # every run's ratio: the spread is visible
    assert ("FAIL demo.put: demo: put vs raw: ratio 0.15 is 40% below the baseline 0.25 "
            "(recorded 2026-11-24); the margin is 30%") in text
    assert text.splitlines()[-1] == "bench gate: 1 failed, 1 passed, 0 watched, 0 not measured"


def _fake_suites(monkeypatch, rates: list[float]):
    """run_suites answers from ``rates`` (pykv/reference ratios, one per pytest run)."""
    monkeypatch.setattr(gate, "FIGURES", [FIG])
    answers = iter(rates)

    def fake(tests, env, log):
        assert tests == ["t.py::test_put"] and env == gate.MODES["quick"].env
        return {"t.py::test_put": _bench(pykv=next(answers), reference=1.0)}, ""

    monkeypatch.setattr(gate, "run_suites", fake)


def test_record_then_gate_passes_and_then_fails_after_a_regression(monkeypatch, tmp_path, capsys):
    path = tmp_path / "baselines.json"
    _fake_suites(monkeypatch, [0.50, 0.52, 0.48, 0.51, 0.50])
    assert gate.main(["--quick", "--record", "--baselines", str(path), "--log", str(tmp_path / "log")]) == 0
    saved = json.loads(path.read_text())["quick"]
    assert saved["figures"]["demo.put"]["ratio"] == 0.5
    assert saved["figures"]["demo.put"]["runs"] == [0.5, 0.52, 0.48, 0.51, 0.5]
    assert saved["figures"]["demo.put"]["gated"] is True
    assert saved["settings"]["PYKV_BENCH_KEYS"] == gate.MODES["quick"].env["PYKV_BENCH_KEYS"]

    _fake_suites(monkeypatch, [0.49, 0.50, 0.10])  # the median of three runs decides
    assert gate.main(["--quick", "--baselines", str(path), "--log", str(tmp_path / "log")]) == 0
    _fake_suites(monkeypatch, [0.20, 0.22, 0.50])  # median 0.22: 56% below, beyond the 50%
    assert gate.main(["--quick", "--baselines", str(path), "--log", str(tmp_path / "log")]) == 1
    assert "FAIL demo.put" in capsys.readouterr().out


def test_gate_refuses_baselines_recorded_with_other_settings(monkeypatch, tmp_path, capsys):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps({"quick": {"settings": {"PYKV_BENCH_KEYS": "5"}, "figures": {}}}))
    _fake_suites(monkeypatch, [0.5, 0.5, 0.5])
    assert gate.main(["--quick", "--baselines", str(path), "--log", str(tmp_path / "log")]) == 2
    assert "recorded with other settings" in capsys.readouterr().err


def test_committed_baselines_cover_every_quick_figure():
    baselines = json.loads((ROOT / "bench" / "baselines.json").read_text())
    quick = baselines["quick"]["figures"]
    missing = [f.name for f in gate.MODES["quick"].figures() if f.name not in quick]
    assert not missing, f"record them: python bench/gate.py --quick --record ({missing})"
    for name, entry in quick.items():
        assert entry["ratio"] > 0 and 0 < entry["margin"] < 1, name


@pytest.mark.timeout(120)
def test_run_suites_reads_a_real_benchmark_by_node_id(tmp_path):
    node = "bench/test_raft.py::test_encode_entries"
    benchmarks, output = gate.run_suites([node], {}, tmp_path / "log")
    assert benchmarks[node]["stats"]["median"] > 0
    assert "1 passed" in output
    assert node in (tmp_path / "log").read_text()
