"""Tests and distances between a reference known only by its summary and new values.

A profile keeps a numeric column as 101 quantiles, a histogram and the means of its outer
percentiles, and a categorical one as counts, never the values themselves; these functions
rebuild what they need from that summary: the reference CDF for Kolmogorov-Smirnov, a
spread of points for Wasserstein, shares for PSI, chi-square, the two-proportion z-test and
Jensen-Shannon. :mod:`.drift` chooses which one a column gets.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "EPSILON", "chi_square_p", "jensen_shannon", "ks_from_quantiles", "monotone", "psi",
    "reference_cdf", "wasserstein_from_quantiles", "z_test_p",
]

EPSILON = 1e-4
"""The share PSI uses for an empty bin or category, so its logarithm stays finite."""

_POINTS_PER_PERCENTILE = 10  # the reference rebuilt for Wasserstein: 10 per percentile
_TAIL_POINTS = 1000  # and 1,000 in each outer percentile, where a long tail needs them


def monotone(quantiles: list[float]) -> Any:
    """The quantiles as a float array that never decreases."""
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


def psi(reference: Any, current: Any) -> float:
    """Population stability index of two count vectors over the same bins or categories;
    an empty bin counts as a share of EPSILON."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = np.where(ref > 0, ref / ref.sum(), EPSILON)
    cur = np.where(cur > 0, cur / cur.sum(), EPSILON)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def chi_square_p(reference: Any, current: Any) -> float:
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


def z_test_p(reference: Any, current: Any) -> float:
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


def jensen_shannon(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance (base 2: from 0, the same shares, to 1) of two count vectors."""
    from scipy.spatial.distance import jensenshannon

    distance = float(jensenshannon(reference, current, base=2))
    # rounding can make the divergence a hair below 0, and its square root NaN
    return distance if math.isfinite(distance) else 0.0
