"""The benchmark harness's verdicts (``bench.harness``): a latency target compares its two
scenarios within each round and reports the higher median of those ratios; a throughput
target compares their median rounds. No server runs here: the rounds are given."""

from __future__ import annotations

from bench.harness import ScenarioResult, Target, evaluate, round_latency_ratios, summarize

DEEP = Target("deep", "page1", max_latency_ratio=1.20, latency="p95")
RATE = Target("deep", "page1", 0.90)


def _rounds(
    page1: list[tuple[float, float]], deep: list[tuple[float, float]]
) -> list[ScenarioResult]:
    """Both scenarios' rounds, from their (req/s, p95 µs) in round order."""
    runs = []
    for scenario, figures in (("page1", page1), ("deep", deep)):
        for round_no, (rps, p95) in enumerate(figures, start=1):
            run = ScenarioResult(scenario, "teamboard", "", "GET", "/", 64, 1, 2, round_no)
            run.requests, run.rps, run.latency_us = 1000, rps, {"p50": p95 / 2, "p95": p95}
            runs.append(run)
    return runs


def _verdicts(runs: list[ScenarioResult], target: Target) -> tuple[float | None, str]:
    by_name = {
        name: summarize([r for r in runs if r.scenario == name]) for name in ("deep", "page1")
    }
    (result,) = evaluate([target], by_name, runs)
    return result.ratio, result.verdict


def test_a_latency_target_pairs_its_sides_within_each_round() -> None:
    # Each scenario's median round by req/s is page 1's round 1 and the deep page's round
    # 3, a busy one: set against each other they read 1.76x. Within their rounds the
    # ratios are 1.1, 1.0 and 1.1.
    runs = _rounds(
        page1=[(2000, 50_000), (2100, 40_000), (1500, 80_000)],
        deep=[(1900, 55_000), (1500, 40_000), (1800, 88_000)],
    )
    assert round_latency_ratios(DEEP, runs) == [1.1, 1.0, 1.1]
    assert _verdicts(runs, DEEP) == (1.1, "PASS")


def test_the_higher_median_decides_an_even_count_of_rounds() -> None:
    runs = _rounds(page1=[(2000, 50_000)] * 2, deep=[(2000, 55_000), (2000, 65_000)])
    assert _verdicts(runs, DEEP) == (1.3, "FAIL")


def test_a_round_where_either_side_failed_is_left_out_and_makes_the_target_not_applicable() -> None:
    runs = _rounds(page1=[(2000, 50_000)] * 2, deep=[(2000, 50_000), (2000, 500_000)])
    runs[-1].non_2xx_3xx = 3  # the deep page's second round answered errors
    assert round_latency_ratios(DEEP, runs) == [1.0]
    assert _verdicts(runs, DEEP) == (None, "N/A")  # the deep page's summary is not clean


def test_a_throughput_target_compares_the_median_rounds() -> None:
    runs = _rounds(page1=[(2000, 1), (2400, 1), (2200, 1)], deep=[(1000, 1), (2200, 1), (2300, 1)])
    ratio, verdict = _verdicts(runs, RATE)
    assert (round(ratio or 0, 3), verdict) == (1.0, "PASS")  # 2,200 against 2,200
