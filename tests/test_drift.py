"""check_schema and drift_report on real samples, against scipy on the raw data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.runtime.distances import ks_from_quantiles, psi, wasserstein_from_quantiles
from jupyter_mlops.runtime.drift import check_schema, drift_report
from jupyter_mlops.runtime.profile import profile_data

MIX = [0.4, 0.3, 0.2, 0.1]


def sample(rows: int, seed: int, *, shift: float = 0.0, mix: list[float] = MIX) -> pd.DataFrame:
    """One draw of the same generator: a normal, a uniform int, four cities, a flag, a date."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(10.0 + shift * 2.0, 2.0, rows),
        "k": rng.integers(0, 100, rows),
        "city": rng.choice(["Oslo", "Rome", "Lima", "Kyiv"], rows, p=mix),
        "flag": rng.random(rows) < 0.3,
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 999, rows), "D"),
    })


SMALL, LARGE = 800, 20_000


@pytest.mark.parametrize("rows, methods", [
    (SMALL, {"x": "ks", "k": "ks", "city": "chi2", "flag": "z"}),
    (LARGE, {"x": "wasserstein", "k": "wasserstein", "city": "jensenshannon",
             "flag": "jensenshannon"}),
])
def test_same_distribution_does_not_drift(rows: int, methods: dict[str, str]) -> None:
    report = drift_report(profile_data(sample(rows, 1), "df"), sample(rows, 2))
    assert {col: r["method"] for col, r in report["columns"].items()} == methods
    assert report["drifted"] == [] and report["share"] == 0.0
    assert report["dataset_drift"] is False and report["rows"] == rows
    assert report["skipped"] == {"when": "datetime columns are not checked for drift"}
    for result in report["columns"].values():
        assert result["drift"] is False
        assert result["psi"] < 0.1
        assert result["threshold"] == (0.05 if result["method"] in ("ks", "chi2", "z") else 0.1)
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize("rows", [SMALL, LARGE])
def test_mean_shifted_by_one_std_drifts_on_that_column_only(rows: int) -> None:
    report = drift_report(profile_data(sample(rows, 1), "df"), sample(rows, 2, shift=1.0))
    assert report["drifted"] == ["x"]
    assert report["share"] == 0.25 and report["dataset_drift"] is False
    assert report["columns"]["x"]["psi"] > 0.25  # PSI's usual "major shift" level
    if rows == LARGE:
        # normed Wasserstein of a 1-std shift is 1
        assert report["columns"]["x"]["score"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("rows", [SMALL, LARGE])
def test_changed_category_mix_drifts(rows: int) -> None:
    report = drift_report(profile_data(sample(rows, 1), "df"),
                          sample(rows, 2, mix=[0.1, 0.2, 0.3, 0.4]))
    assert report["drifted"] == ["city"]
    assert report["columns"]["city"]["psi"] > 0.25


def test_dataset_drift_when_half_the_columns_drift() -> None:
    profile = profile_data(sample(SMALL, 1), "df")
    both = sample(SMALL, 2, shift=1.0, mix=[0.1, 0.2, 0.3, 0.4])
    report = drift_report(profile, both)
    assert report["drifted"] == ["x", "city"]
    assert (report["share"], report["dataset_drift"]) == (0.5, True)
    assert drift_report(profile, both, threshold_share=0.75)["dataset_drift"] is False
    with pytest.raises(MlopsError, match="threshold_share for `df` is 0"):
        drift_report(profile, both, threshold_share=0)


def test_new_category_drifts_and_missing_columns_are_left_to_the_schema() -> None:
    profile = profile_data(sample(SMALL, 1), "df")
    current = sample(SMALL, 2).drop(columns=["k"])
    current.loc[:9, "city"] = "Cairo"  # never seen in the notebook
    report = drift_report(profile, current)
    assert "k" not in report["columns"] and "k" not in report["skipped"]
    assert report["columns"]["city"]["score"] == 0.0 and report["drifted"] == ["city"]


def test_columns_that_cannot_be_compared_are_skipped_with_the_reason() -> None:
    profile = profile_data(sample(SMALL, 1).assign(empty=np.nan), "df")
    current = sample(SMALL, 2).assign(x=lambda d: d["x"].astype(str), empty=np.nan)
    report = drift_report(profile, current)
    assert report["skipped"] == {
        "x": "was numeric in the notebook, is categorical now (see check_schema)",
        "when": "datetime columns are not checked for drift",
        "empty": "the notebook's column had no finite values",
    }
    assert list(report["columns"]) == ["k", "city", "flag"]


def test_few_valued_numeric_columns_are_tested_as_categories() -> None:
    rng = np.random.default_rng(5)
    small = drift_report(profile_data(rng.integers(0, 2, SMALL), "label"),
                         rng.integers(0, 2, SMALL))
    assert small["columns"]["label"]["method"] == "z"
    rated = profile_data(pd.DataFrame({"stars": rng.integers(1, 6, LARGE)}), "df")
    skewed = pd.DataFrame({"stars": rng.choice([1, 2, 3, 4, 5], LARGE,
                                               p=[0.5, 0.2, 0.1, 0.1, 0.1])})
    result = drift_report(rated, skewed)["columns"]["stars"]
    assert (result["method"], result["drift"]) == ("jensenshannon", True)


def test_series_and_arrays_are_checked_like_frames() -> None:
    rng = np.random.default_rng(8)
    profile = profile_data(rng.normal(size=(500, 2)), "X")
    report = drift_report(profile, np.column_stack([rng.normal(size=500),
                                                    rng.normal(3.0, 1.0, 500)]))
    assert report["drifted"] == ["1"]
    series = profile_data(pd.Series(rng.normal(size=500), name="y"), "y")
    assert drift_report(series, pd.Series(rng.normal(size=300), name="y"))["drifted"] == []


def test_empty_data_and_bad_profiles_are_errors() -> None:
    profile = profile_data(sample(SMALL, 1), "df")
    with pytest.raises(MlopsError, match=r"^`df` is empty \(0 rows\); "):
        drift_report(profile, sample(SMALL, 2).iloc[:0])
    with pytest.raises(MlopsError, match="profile of `df` has no list of columns"):
        drift_report({"name": "df"}, sample(SMALL, 2))


def test_check_schema_names_each_problem() -> None:
    profile = profile_data(sample(50, 1), "df")
    assert check_schema(profile, sample(50, 2)) == []
    assert check_schema(profile, sample(0, 2)) == []  # a schema needs no rows
    current = (sample(50, 2).drop(columns=["city"]).astype({"k": "float64"})
               .assign(extra=1))
    assert check_schema(profile, current) == [
        "column `k` was int64 in the notebook, is float64 now",
        "column `city` is missing (the notebook's `df` had it)",
        "column `extra` is new (the notebook's `df` did not have it)",
    ]
    grid = profile_data(np.zeros((3, 2)), "X")
    assert check_schema(grid, np.zeros((3, 3))) == [
        "column `2` is new (the notebook's `X` did not have it)"]
    assert check_schema(grid, np.zeros((3, 2), dtype=np.int32)) == [
        "column `0` was float64 in the notebook, is int32 now",
        "column `1` was float64 in the notebook, is int32 now"]
    series = profile_data(pd.Series([1.0, 2.0], name="x"), "x")
    assert check_schema(series, pd.DataFrame({"x": [1.0]})) == [
        "`x` was a Series in the notebook, is a DataFrame now"]


@pytest.mark.parametrize("n_ref, n_cur, shift, scale", [
    (50, 50, 0.0, 1.0),
    (500, 500, 0.0, 1.0),
    (1000, 5000, 0.0, 1.0),
    (300, 300, 1.0, 1.0),
    (1000, 2000, 0.0, 2.0),
    (1000, 100_000, 0.5, 1.0),
    (800, 800, 0.0, 1.0),
])
def test_ks_from_quantiles_agrees_with_ks_2samp_on_raw_samples(
        n_ref: int, n_cur: int, shift: float, scale: float) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = rng.gamma(2.0, 1.0, n_ref)  # skewed, so the quantiles are not a straight line
    current = rng.gamma(2.0, 1.0, n_cur) * scale + shift
    profile = profile_data(reference, "a")
    statistic, _ = ks_from_quantiles(np.array(profile["columns"][0]["quantiles"]), n_ref,
                                     np.sort(current))
    p_value = drift_report(profile, current)["columns"]["a"]["score"]
    exact = stats.ks_2samp(reference, current)
    # the rebuilt CDF is off by at most a percentile, and by at most 1/n_ref between
    # the reference's own values
    assert statistic == pytest.approx(exact.statistic, abs=0.01 + 1 / n_ref)
    assert (p_value < 0.05) == (exact.pvalue < 0.05)
    assert p_value == pytest.approx(exact.pvalue, abs=0.12)


def test_ks_on_discrete_values_uses_the_jumps_of_the_cdf() -> None:
    rng = np.random.default_rng(4)
    reference, current = rng.integers(0, 10, 900), rng.integers(0, 10, 700)
    profile = profile_data(reference, "a")
    statistic, p_value = ks_from_quantiles(np.array(profile["columns"][0]["quantiles"]), 900,
                                           np.sort(current).astype(float))
    exact = stats.ks_2samp(reference, current)
    assert statistic == pytest.approx(exact.statistic, abs=0.01)
    assert p_value > 0.05 and exact.pvalue > 0.05


@pytest.mark.parametrize("draw", [
    lambda rng, n: rng.normal(size=n),
    lambda rng, n: rng.exponential(size=n),
    lambda rng, n: rng.lognormal(0.0, 2.0, n),  # a long right tail
    lambda rng, n: rng.standard_t(3, n),  # long tails on both sides
    lambda rng, n: np.where(rng.random(n) < 0.005, 1e6, rng.normal(size=n)),  # sentinels
], ids=["normal", "exponential", "lognormal", "t3", "sentinel"])
def test_wasserstein_from_quantiles_matches_the_raw_distance(draw: object) -> None:
    rng = np.random.default_rng(6)
    reference = draw(rng, 100_000)
    std = reference.std()
    column = profile_data(reference, "a")["columns"][0]
    quantiles = np.array(column["quantiles"])
    for current in (draw(rng, 20_000), draw(rng, 20_000) + 0.2 * std):
        ours = wasserstein_from_quantiles(quantiles, current, column["tail_means"]) / std
        exact = stats.wasserstein_distance(reference, current) / std
        # the rebuilt tails can overstate the distance by a few hundredths (threshold 0.1)
        assert exact - 0.005 <= ours <= exact + 0.04
    same = drift_report(profile_data(reference, "a"), draw(rng, 20_000))["columns"]["a"]
    assert (same["method"], same["drift"]) == ("wasserstein", False)


def test_categorical_scores_match_scipy_on_the_counts() -> None:
    rng = np.random.default_rng(9)
    cities = ["Oslo", "Rome", "Lima", "Kyiv"]
    small_ref, current = rng.choice(cities, 600, p=MIX), rng.choice(cities, 700, p=MIX)
    ref_counts = pd.Series(small_ref).value_counts().reindex(cities).to_numpy()
    cur_counts = pd.Series(current).value_counts().reindex(cities).to_numpy()
    chi2 = drift_report(profile_data(small_ref, "city"), current)["columns"]["city"]
    expected = ref_counts / ref_counts.sum() * cur_counts.sum()
    assert chi2["score"] == pytest.approx(stats.chisquare(cur_counts, expected).pvalue)
    assert chi2["psi"] == pytest.approx(psi(ref_counts, cur_counts))
    large_ref = rng.choice(cities, 5000, p=MIX)
    ref_counts = pd.Series(large_ref).value_counts().reindex(cities).to_numpy()
    js = drift_report(profile_data(large_ref, "city"), current)["columns"]["city"]
    assert js["score"] == pytest.approx(jensenshannon(ref_counts, cur_counts, base=2))


def test_z_test_is_the_two_proportion_test() -> None:
    rng = np.random.default_rng(10)
    reference, current = rng.random(400) < 0.3, rng.random(500) < 0.38
    result = drift_report(profile_data(reference, "flag"), current)["columns"]["flag"]
    table = np.array([[reference.sum(), (~reference).sum()], [current.sum(), (~current).sum()]])
    # the pooled two-sided z-test is the 2x2 chi-square test without continuity correction
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert (result["method"], result["score"]) == ("z", pytest.approx(expected))


def test_psi_by_hand_and_outer_bins_open_ended() -> None:
    # shares 0.5/0.5 against 0.25/0.75
    assert psi([50, 50], [25, 75]) == pytest.approx(
        (0.5 - 0.25) * np.log(0.5 / 0.25) + (0.5 - 0.75) * np.log(0.5 / 0.75))
    # an empty bin counts as 1e-4
    assert psi([10, 0], [5, 5]) == pytest.approx(
        (1.0 - 0.5) * np.log(1.0 / 0.5) + (1e-4 - 0.5) * np.log(1e-4 / 0.5))
    profile = profile_data(np.linspace(0.0, 1.0, 2000), "u")
    # all new values beyond the reference's max land in the last bin, none is lost
    far = drift_report(profile, np.full(100, 5.0))["columns"]["u"]["psi"]
    shares = np.full(20, 0.05)
    assert far == pytest.approx(
        float(np.sum((shares[:-1] - 1e-4) * np.log(shares[:-1] / 1e-4))
              + (0.05 - 1.0) * np.log(0.05 / 1.0)), rel=1e-3)


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-3.7, 12.1), (18.0, 89.0), (4.5, 5.5),
                                       (1e-300, 3e-300), (-1e15, 1e15), (1e17, 1e17 + 100),
                                       (1e17, 1e17 + 2048), (0.0, 1e-308), (-5e-324, 5e-324)])
def test_bins_are_counted_as_a_binary_search_over_the_edges_counts(low: float,
                                                                  high: float) -> None:
    """The PSI's counts over the profile's equal bins (np.histogram's arithmetic path) are
    those of a binary search over the very edges: each edge, the floats either side of it,
    values beyond both ends and random values land in the same bins."""
    from jupyter_mlops.runtime.drift import bin_counts
    from jupyter_mlops.runtime.profile import histogram_edges

    edges = histogram_edges(low, high)
    rng = np.random.default_rng(5)
    span = high - low
    values = np.concatenate([
        edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),
        [low - span, high + span, -np.finfo(float).max, np.finfo(float).max],
        rng.uniform(low - span / 10, high + span / 10, 50_000),
        np.nextafter(low, np.inf) + np.arange(-3, 300) * np.spacing(low)])
    searched = np.bincount(np.searchsorted(edges[1:-1], values, side="right"),
                           minlength=len(edges) - 1)
    counted = bin_counts(edges, values)
    assert counted.tolist() == searched.tolist()
    assert counted.sum() == len(values)
    # edges not spaced as the profile spaces them are searched as before
    uneven = np.array([0.0, 0.1, 0.5, 2.0])
    assert bin_counts(uneven, np.array([-1.0, 0.1, 0.4, 0.5, 3.0])).tolist() == [1, 2, 2]


@pytest.mark.parametrize("reference_rows", [SMALL, LARGE])
def test_a_big_column_is_measured_on_a_seeded_sample_as_close_as_all_its_values(
        reference_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past drift.SAMPLE finite values, KS and Wasserstein read a seeded sample: the scores
    stay within 0.01 of those on every value (the same decisions), PSI and the few-values
    counts stay exact, the result says so, and the same data gives the same figures."""
    from jupyter_mlops.runtime import drift

    rng = np.random.default_rng(11)
    profile = profile_data(pd.DataFrame({
        "x": rng.lognormal(0.0, 0.6, reference_rows),
        "label": rng.integers(0, 2, reference_rows)}), "df")
    for shift in (0.0, 0.04, 0.4):
        rows = 1_000_000
        current = pd.DataFrame({"x": rng.lognormal(shift, 0.6, rows),
                                "label": rng.integers(0, 2, rows)})
        sampled = drift_report(profile, current)
        with monkeypatch.context() as patch:
            patch.setattr(drift, "SAMPLE", 10 ** 9)
            exact = drift_report(profile, current)
        x, x_exact = sampled["columns"]["x"], exact["columns"]["x"]
        assert x["sample"] == drift.SAMPLE and "sample" not in x_exact
        assert x["method"] == x_exact["method"]
        if x["method"] == "wasserstein":
            assert abs(x["score"] - x_exact["score"]) < 0.01, (shift, x, x_exact)
        else:  # ks: the p-value, whose effective sample size is the notebook's 800 values
            assert abs(x["score"] - x_exact["score"]) < 0.05, (shift, x, x_exact)
        assert x["drift"] == x_exact["drift"]
        assert x["psi"] == x_exact["psi"]
        assert sampled["columns"]["label"] == exact["columns"]["label"]
        assert "sample" not in sampled["columns"]["label"]
        assert drift_report(profile, current) == sampled
    assert x["drift"]  # the largest shift is seen either way
