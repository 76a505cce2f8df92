"""Schema and drift checks of new data against a profile recorded by ``profile_data``."""

from __future__ import annotations

import math
from typing import Any

from ..errors import MlopsError
from .profile import as_frame, column_kind, histogram_edges, label_counts

__all__ = [
    "EPSILON", "SAMPLE", "SMALL_REFERENCE", "check_schema", "column_count", "drift_report",
    "ks_from_quantiles", "psi", "reference_cdf", "wasserstein_from_quantiles",
]

SMALL_REFERENCE = 1000
"""Evidently's default rule: a column with at most this many reference values is tested
(KS, chi-square, z: drift when p < 0.05), a larger one is measured by a distance (normed
Wasserstein, Jensen-Shannon: drift when >= 0.1), because with many rows every test finds
differences too small to matter."""

SAMPLE = 200_000
"""A numeric column with more finite values than this is measured (KS, Wasserstein) on a
seeded uniform sample of this many of them, drawn with replacement, instead of sorting them
all: the reference is itself a summary (101 quantiles), and at this size the sample moves the
normed Wasserstein distance and the KS statistic by about 1/sqrt(200,000) ~ 0.002, fifty
times under the 0.1 threshold, while a 10,000,000-row column costs one pass instead of a
sort. The KS p-value keeps counting the notebook's values, which make its effective sample
size then. PSI and the counts of a column of few values are still exact, on every value.
The result says ``sample`` when one was used."""

SAMPLE_SEED = 20240601
"""The sample's seed: fixed, so a check of the same data gives the same figures."""

EPSILON = 1e-4
"""The share PSI uses for an empty bin or category, so its logarithm stays finite."""

_P_THRESHOLD = 0.05
_DISTANCE_THRESHOLD = 0.1
_POINTS_PER_PERCENTILE = 10  # the reference rebuilt for Wasserstein: 10 per percentile
_TAIL_POINTS = 1000  # and 1,000 in each outer percentile, where a long tail needs them
_FEW_VALUES = 5  # Evidently tests numeric columns of at most this many values as categories


def check_schema(profile: dict[str, Any], value: Any) -> list[str]:
    """Schema problems of ``value`` against ``profile``, one line each, naming the column:
    missing columns, new columns and changed dtypes (an empty list when all is well).

    A value of another kind than the recorded one (a Series where a DataFrame was) is one
    more problem; its columns are still compared."""
    name, recorded = _recorded(profile)
    frame, kind = as_frame(value, name)
    problems = []
    if kind != profile.get("kind", kind):
        problems.append(f"`{name}` was a {profile['kind']} in the notebook, is a {kind} now")
    current = {str(col): str(frame.iloc[:, i].dtype) for i, col in enumerate(frame.columns)}
    for column in recorded:
        col = column["name"]
        if col not in current:
            problems.append(f"column `{col}` is missing (the notebook's `{name}` had it)")
        elif current[col] != column["dtype"]:
            problems.append(f"column `{col}` was {column['dtype']} in the notebook, "
                            f"is {current[col]} now")
    known = {column["name"] for column in recorded}
    problems.extend(f"column `{col}` is new (the notebook's `{name}` did not have it)"
                    for col in current if col not in known)
    return problems


def drift_report(profile: dict[str, Any], value: Any, *,
                 threshold_share: float = 0.5) -> dict[str, Any]:
    """Per-column drift of ``value`` against the reference ``profile``, with Evidently's
    default methods and thresholds, so the figures can be compared with Evidently's.

    The method depends on the number of the column's values in the notebook (nulls and
    infinities left out), as Evidently's default does:

    ==================  ==========================  ==================================
    column              at most 1,000 values        more than 1,000 values
    ==================  ==========================  ==================================
    numeric             ``ks``: p < 0.05 is drift   ``wasserstein`` / std: >= 0.1
    categorical         ``chi2``: p < 0.05          ``jensenshannon`` (base 2): >= 0.1
    two values          ``z`` (two proportions)     ``jensenshannon``
    ==================  ==========================  ==================================

    A numeric column with at most 5 distinct values on both sides together (a 0/1 label) is
    tested as categories, as in Evidently. ``psi`` is a second figure for every checked
    column: numeric columns over the profile's histogram bins (the outer bins open-ended),
    categorical ones over the recorded categories; an empty bin counts as a share of 1e-4.

    The profile holds no raw data, so the reference is rebuilt from it: a numeric column
    from its 101 quantiles, taken as uniform within each percentile (the outermost ones
    shaped to their recorded means), which puts the KS statistic within about 0.01 of
    ``ks_2samp`` on the raw samples, and the normed Wasserstein distance within a few
    hundredths of the raw one (above it, for long tails); see ``ks_from_quantiles`` and
    ``wasserstein_from_quantiles``. A categorical column is rebuilt from its top 20 values
    and their counts, with all other values pooled as one category "other" on both sides (a
    change among the rarer values that keeps their total is not seen). As in Evidently, the
    chi-square test takes the reference shares as exact, so against a much larger current
    sample (1,000 rows in the notebook, a million now) it can flag the reference's own
    sampling noise as drift; the z-test and KS count both sample sizes.

    Returns plain JSON::

        {"columns": {"age": {"method": "ks", "score": 0.43, "threshold": 0.05,
                             "drift": False, "psi": 0.012}, ...},
         "drifted": ["city"], "share": 0.5, "dataset_drift": True, "rows": 1000,
         "skipped": {"when": "datetime columns are not checked for drift"}}

    ``score`` is the p-value (ks, chi2, z) or the distance; ``share`` is the drifted share of
    the checked columns and ``dataset_drift`` is ``share >= threshold_share``. Columns
    missing now are left to ``check_schema``; columns that cannot be compared (datetime and
    other kinds, no values on one side, a numeric column that is not numeric any more) are
    in ``skipped`` with the reason. Raises MlopsError for 0 rows or a malformed profile.
    """
    name, recorded = _recorded(profile)
    if not 0.0 < threshold_share <= 1.0:
        raise MlopsError(f"threshold_share for `{name}` is {threshold_share}; "
                         f"give a share of drifted columns between 0 (excluded) and 1")
    frame, _ = as_frame(value, name)
    rows = len(frame)
    if rows == 0:
        raise MlopsError(f"`{name}` is empty (0 rows); there is nothing to compare with the "
                         f"notebook's profile: check the step that makes `{name}`")
    current = {str(col): frame.iloc[:, i] for i, col in enumerate(frame.columns)}
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for column in recorded:
        col = column["name"]
        if col not in current:
            continue
        outcome = _column_drift(column, current[col])
        if isinstance(outcome, str):
            skipped[col] = outcome
        else:
            results[col] = outcome
    drifted = [col for col, result in results.items() if result["drift"]]
    share = len(drifted) / len(results) if results else 0.0
    return {"columns": results, "drifted": drifted, "share": share,
            "dataset_drift": bool(results) and share >= threshold_share, "rows": rows,
            "skipped": skipped}


def _recorded(profile: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    name = profile.get("name", "data") if isinstance(profile, dict) else "data"
    columns = profile.get("columns") if isinstance(profile, dict) else None
    if not isinstance(columns, list):
        raise MlopsError(f"the recorded profile of `{name}` has no list of columns; "
                         f"record it again by running its %%mlops data cell in the notebook")
    return name, columns


def _column_drift(column: dict[str, Any], series: Any) -> dict[str, Any] | str:
    """The drift result of one column, or the reason it is not checked."""
    kind = column["kind"]
    now = column_kind(series.dtype)
    if kind == "numeric":
        if now != "numeric":
            return f"was numeric in the notebook, is {now} now (see check_schema)"
        if not column.get("quantiles"):
            return "the notebook's column had no finite values"
        return _numeric_drift(column, series)
    if kind in ("categorical", "boolean"):
        if now not in ("categorical", "boolean", "numeric"):
            return f"was {kind} in the notebook, is {now} now (see check_schema)"
        return _categorical_drift(column, series)
    return f"{kind} columns are not checked for drift"


def _numeric_drift(column: dict[str, Any], series: Any) -> dict[str, Any] | str:
    import numpy as np

    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return "no finite values now"
    sampled = len(finite) > SAMPLE
    values = np.sort(_sample(finite) if sampled else finite)
    n_ref = column_count(column)
    small = n_ref <= SMALL_REFERENCE
    recorded = column.get("values")
    result = None
    # a sorted (sample of the) column with more distinct values than that cannot qualify:
    # no need to count them all
    few_now = np.count_nonzero(values[1:] != values[:-1]) < _FEW_VALUES
    if recorded is not None and len(recorded) <= _FEW_VALUES and few_now:
        # Evidently tests a numeric column of at most 5 distinct values (both sides together)
        # as categories: counted exactly, on every value
        levels, counts = _distinct_counts(finite)
        union = np.union1d([v for v, _ in recorded], levels)
        if len(union) <= _FEW_VALUES:
            reference = np.zeros(len(union))
            reference[np.searchsorted(union, [v for v, _ in recorded])] = [
                c for _, c in recorded]
            current = np.zeros(len(union))
            current[np.searchsorted(union, levels)] = counts
            result = _compare_counts(reference, current, len(union), small)
    if result is None:
        quantiles = _monotone(column["quantiles"])
        if small:
            _, p_value = ks_from_quantiles(quantiles, n_ref, values)
            result = _result("ks", p_value, _P_THRESHOLD, p_value < _P_THRESHOLD)
        else:
            distance = wasserstein_from_quantiles(quantiles, values, column.get("tail_means"))
            # Evidently divides by np.std of the reference, the population std (ddof=0)
            std = column.get("std") or 0.0
            norm = max(std * math.sqrt((n_ref - 1) / n_ref), 0.001)
            score = distance / norm
            result = _result("wasserstein", score, _DISTANCE_THRESHOLD,
                             score >= _DISTANCE_THRESHOLD)
    if sampled and result["method"] in ("ks", "wasserstein"):
        result["sample"] = len(values)
    result["psi"] = _numeric_psi(column, finite)
    return result


def _sample(finite: Any) -> Any:
    """:data:`SAMPLE` values drawn uniformly, with replacement, with a fixed seed: the same
    data gives the same sample, and so the same score, every time."""
    import numpy as np

    return finite[np.random.default_rng(SAMPLE_SEED).integers(0, len(finite), SAMPLE)]


def _distinct_counts(values: Any) -> tuple[Any, Any]:
    """The distinct values (sorted) and their counts, by hashing rather than sorting."""
    import numpy as np
    import pandas as pd

    counts = pd.Series(values, copy=False).value_counts(sort=False)
    order = np.argsort(counts.index.to_numpy())
    return counts.index.to_numpy()[order], counts.to_numpy()[order]


def _categorical_drift(column: dict[str, Any], series: Any) -> dict[str, Any] | str:
    import numpy as np
    import pandas as pd

    top = column.get("top") or []
    other = int(column.get("other") or 0)
    reference = np.array([count for _, count in top] + [other], dtype=float)
    if reference.sum() == 0:
        return "the notebook's column had no values"
    labels, counts = label_counts(series)
    if len(labels) == 0:
        return "no values now"
    # each new value goes to its recorded category, or to "other" (the last slot)
    slot = pd.Index([label for label, _ in top], dtype=object).get_indexer(
        pd.Index(labels, dtype=object))
    unseen = slot < 0
    slot[unseen] = len(top)
    current = np.bincount(slot, weights=counts, minlength=len(top) + 1)
    # distinct values of both sides together, as Evidently counts them to pick its test; with
    # an "other" in the notebook there were more than 20, and the exact number does not matter
    n_values = len(top) + int(np.count_nonzero(unseen)) if other == 0 else len(top) + 2
    used = (reference > 0) | (current > 0)
    small = reference.sum() <= SMALL_REFERENCE
    result = _compare_counts(reference[used], current[used], n_values, small)
    result["psi"] = psi(reference[used], current[used])
    return result


def _compare_counts(reference: Any, current: Any, n_values: int,
                    small: bool) -> dict[str, Any]:
    """Evidently's default test of counts over categories: with a small reference the z-test
    for at most two values, else chi-square; with a large one Jensen-Shannon distance."""
    if small:
        p_value = _z_test(reference, current) if n_values <= 2 else _chi_square(
            reference, current)
        return _result("z" if n_values <= 2 else "chi2", p_value, _P_THRESHOLD,
                       p_value < _P_THRESHOLD)
    score = _jensen_shannon(reference, current)
    return _result("jensenshannon", score, _DISTANCE_THRESHOLD, score >= _DISTANCE_THRESHOLD)


def _result(method: str, score: float, threshold: float, drift: Any) -> dict[str, Any]:
    return {"method": method, "score": float(score), "threshold": threshold,
            "drift": bool(drift)}


def column_count(column: dict[str, Any]) -> int:
    """The number of finite values a numeric column's profile was made from (its histogram
    counts each of them once)."""
    return int(sum(column["histogram"]["counts"]))


def _monotone(quantiles: list[float]) -> Any:
    import numpy as np

    # quantiles are non-decreasing already; a hand-edited profile must not break the CDF
    return np.maximum.accumulate(np.asarray(quantiles, dtype=np.float64))


def reference_cdf(quantiles: Any, x: Any) -> tuple[Any, Any]:
    """The reference CDF rebuilt from its quantiles, at ``x``: (value, left limit).

    Between the 101 quantiles the CDF is linear (the reference is taken as uniform within
    each percentile); where several quantiles are equal (a value that holds many rows) it
    jumps from the first of their percentiles to the last, as the empirical CDF does.
    """
    import numpy as np

    levels = np.linspace(0.0, 1.0, len(quantiles))
    knots, first = np.unique(quantiles, return_index=True)
    last = np.append(first[1:] - 1, len(quantiles) - 1)
    below, above = levels[first], levels[last]  # CDF just before / at each knot
    j = np.searchsorted(knots, x, side="right") - 1
    inside = (j >= 0) & (j < len(knots) - 1)
    jj = np.clip(j, 0, len(knots) - 1)
    nxt = np.clip(j + 1, 0, len(knots) - 1)
    span = np.where(inside, knots[nxt] - knots[jj], 1.0)
    slope = np.where(inside, (below[nxt] - above[jj]) / span, 0.0)
    value = np.where(j < 0, 0.0, above[jj] + slope * (x - knots[jj]))
    value = np.where(j >= len(knots) - 1, 1.0, value)
    at_knot = (j >= 0) & (knots[jj] == x)
    left = np.where(at_knot, below[jj], value)
    return value, left


def ks_from_quantiles(quantiles: Any, n_ref: int, ordered: Any) -> tuple[float, float]:
    """Two-sample KS statistic D and p-value of sorted current values against a reference
    known by its quantiles (``n_ref`` values).

    D is the largest distance between the current empirical CDF and the rebuilt reference
    CDF; both are monotone and the reference is linear between its knots, so the largest
    distance is at a current value or a knot, on one side of it. The p-value is scipy's
    ``kstwo`` for the effective sample size n_ref * n_cur / (n_ref + n_cur), the one
    ``ks_2samp`` uses in its asymptotic mode.
    """
    import numpy as np
    from scipy.stats import kstwo

    points = np.union1d(ordered, quantiles)
    n_cur = len(ordered)
    cur_at = np.searchsorted(ordered, points, side="right") / n_cur
    cur_before = np.searchsorted(ordered, points, side="left") / n_cur
    ref_at, ref_before = reference_cdf(quantiles, points)
    statistic = float(max(np.max(np.abs(cur_at - ref_at)),
                          np.max(np.abs(cur_before - ref_before))))
    effective = max(1, round(n_ref * n_cur / (n_ref + n_cur)))
    p_value = float(min(1.0, max(0.0, kstwo.sf(statistic, effective))))
    return statistic, p_value


def wasserstein_from_quantiles(quantiles: Any, values: Any,
                               tail_means: list[float | None] | None = None) -> float:
    """Wasserstein-1 distance between the current values and the reference rebuilt from its
    quantiles: 10 evenly spread points within each percentile interval from 1% to 99%, and
    in the lowest and highest 1% a curve ``a + (b - a) * t**g`` whose exponent makes its mean
    the recorded tail mean (mirrored for the lowest 1%), 1,000 points each.

    Within a percentile a uniform spread is close enough, but the outer percentiles of a
    long-tailed column reach one extreme value, and a straight line to it would make a
    lognormal sample drift from itself; without ``tail_means`` (None) the tails are
    straight lines too.
    """
    import numpy as np
    from scipy.stats import wasserstein_distance

    steps = (np.arange(_POINTS_PER_PERCENTILE) + 0.5) / _POINTS_PER_PERCENTILE
    low, high = quantiles[1:-2, None], quantiles[2:-1, None]
    inner = (low + (high - low) * steps).ravel()
    lowest, highest = tail_means if tail_means else (None, None)
    bottom = -_tail(-quantiles[1], -quantiles[0], None if lowest is None else -lowest)
    top = _tail(quantiles[-2], quantiles[-1], highest)
    points = np.concatenate([bottom, inner, top])
    weights = np.concatenate([np.full(len(bottom), 0.01 / len(bottom)),
                              np.full(len(inner), 0.01 / _POINTS_PER_PERCENTILE),
                              np.full(len(top), 0.01 / len(top))])
    return float(wasserstein_distance(points, values, u_weights=weights))


def _tail(start: float, end: float, mean: float | None) -> Any:
    """The quantile function of one outer percentile, from ``start`` out to ``end`` (the
    extreme value), with the given mean: ``start + (end - start) * t**g``."""
    import numpy as np

    t = (np.arange(_TAIL_POINTS) + 0.5) / _TAIL_POINTS
    if end <= start:
        return np.full(_TAIL_POINTS, float(start))
    # the curve's mean is start + (end - start) / (g + 1); a mean outside the range (a
    # hand-edited profile) is clipped rather than trusted
    share = 0.5 if mean is None else (mean - start) / (end - start)
    share = min(max(share, 1e-4), 1.0 - 1e-4)
    return start + (end - start) * t ** (1.0 / share - 1.0)


def _numeric_psi(column: dict[str, Any], values: Any) -> float:
    import numpy as np

    histogram = column["histogram"]
    edges = np.asarray(histogram["edges"], dtype=np.float64)
    if len(edges) < 2:
        edges = histogram_edges(column["min"], column["max"])
    # the outer bins are open-ended: values beyond the reference's range land in them
    bins = np.searchsorted(edges[1:-1], values, side="right")
    current = np.bincount(bins, minlength=len(edges) - 1)
    return psi(np.asarray(histogram["counts"], dtype=np.float64), current)


def psi(reference: Any, current: Any) -> float:
    """Population stability index of two count vectors over the same bins or categories;
    an empty bin counts as a share of EPSILON."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = np.where(ref > 0, ref / ref.sum(), EPSILON)
    cur = np.where(cur > 0, cur / cur.sum(), EPSILON)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _chi_square(reference: Any, current: Any) -> float:
    """p-value of the chi-square goodness-of-fit of the current counts to the reference
    shares (as Evidently's test: the reference frequencies are taken as known)."""
    import numpy as np
    from scipy.stats import chi2

    expected = reference / reference.sum() * current.sum()
    if np.any((expected == 0) & (current > 0)):
        return 0.0  # a category the notebook never saw: infinitely unlikely under it
    keep = expected > 0
    statistic = float(np.sum((current[keep] - expected[keep]) ** 2 / expected[keep]))
    dof = int(keep.sum()) - 1
    return float(chi2.sf(statistic, dof)) if dof > 0 else 1.0


def _z_test(reference: Any, current: Any) -> float:
    """p-value of the two-sided two-proportion z-test (pooled), Evidently's test for a
    column of two values; one value on both sides is no drift."""
    from scipy.stats import norm

    if len(reference) < 2:
        return 1.0
    n_ref, n_cur = float(reference.sum()), float(current.sum())
    p_ref, p_cur = reference[0] / n_ref, current[0] / n_cur
    pooled = (reference[0] + current[0]) / (n_ref + n_cur)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    if spread == 0:
        return 1.0
    return float(2 * norm.sf(abs(p_ref - p_cur) / spread))


def _jensen_shannon(reference: Any, current: Any) -> float:
    from scipy.spatial.distance import jensenshannon

    distance = float(jensenshannon(reference, current, base=2))
    # rounding can make the divergence a hair below 0, and its square root NaN
    return distance if math.isfinite(distance) else 0.0
