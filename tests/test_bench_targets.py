"""The benchmark harness's verdicts (``bench.harness``): a latency target compares its two
scenarios within each round and reports the higher median of those ratios; a throughput
target compares their median rounds. No server runs here: the rounds are given."""

from __future__ import annotations

from bench.harness import ScenarioResult, Target, evaluate, round_latency_ratios, summarize

DEEP = Target("deep", "page1", max_latency_ratio=1.20, latency="p95")
RATE = Target("deep", "page1", 0.90)


def _round(scenario: str, round_no: int, rps: float, p95: float, **extra: object) -> ScenarioResult:
    result = ScenarioResult(
        scenario, "teamboard", "", "GET", "/", 64, 1, 2,
        round_no=round_no, requests=1000, rps=rps, latency_us={"p50": p95 / 2, "p95": p95},
    )  # fmt: skip
    for name, value in extra.items():
        setattr(result, name, value)
    return result


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
    runs = [
        _round("page1", 1, 2000, 50_000), _round("deep", 1, 1900, 55_000),
        _round("page1", 2, 2100, 40_000), _round("deep", 2, 1500, 40_000),
        _round("page1", 3, 1500, 80_000), _round("deep", 3, 1800, 88_000),
    ]  # fmt: skip
    assert round_latency_ratios(DEEP, runs) == [1.1, 1.0, 1.1]
    assert _verdicts(runs, DEEP) == (1.1, "PASS")


def test_the_higher_median_decides_an_even_count_of_rounds() -> None:
    runs = [
        _round("page1", 1, 2000, 50_000), _round("deep", 1, 2000, 55_000),
        _round("page1", 2, 2000, 50_000), _round("deep", 2, 2000, 65_000),
    ]  # fmt: skip
    assert _verdicts(runs, DEEP) == (1.3, "FAIL")


def test_a_round_where_either_side_failed_is_left_out_and_makes_the_target_not_applicable() -> None:
    runs = [
        _round("page1", 1, 2000, 50_000), _round("deep", 1, 2000, 50_000),
        _round("page1", 2, 2000, 50_000), _round("deep", 2, 2000, 500_000, non_2xx_3xx=3),
    ]  # fmt: skip
    assert round_latency_ratios(DEEP, runs) == [1.0]
    assert _verdicts(runs, DEEP) == (None, "N/A")  # the deep page's summary is not clean


def test_a_throughput_target_compares_the_median_rounds() -> None:
    runs = [
        _round("page1", 1, 2000, 1), _round("deep", 1, 1000, 1),
        _round("page1", 2, 2400, 1), _round("deep", 2, 2200, 1),
        _round("page1", 3, 2200, 1), _round("deep", 3, 2300, 1),
    ]  # fmt: skip
    ratio, verdict = _verdicts(runs, RATE)
    assert (round(ratio or 0, 3), verdict) == (1.0, "PASS")  # 2,200 against 2,200
