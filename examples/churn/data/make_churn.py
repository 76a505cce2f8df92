"""Generate ``churn.csv``: a synthetic customer-churn table for the churn example.

Each row is a subscription customer. ``churned`` (1 = left within the quarter) is drawn from
a logistic model of the other columns plus noise, so a classifier can learn it well but not
perfectly. A few values are missing, as in a real export: ``total_charges`` for customers not
billed yet (tenure 0) and at random, ``age`` and ``payment_method`` at random.

Run it from anywhere; it writes the CSV beside itself::

    python examples/churn/data/make_churn.py

Uses numpy and the standard library only; the seed is fixed, so the file is reproducible.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SEED = 20240611
N_CUSTOMERS = 2000
OUT = Path(__file__).with_name("churn.csv")

COLUMNS = [
    "customer_id",
    "age",
    "region",
    "tenure_months",
    "contract",
    "payment_method",
    "internet_service",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "churned",
]


def choice(rng: np.random.Generator, options: dict[str, float], size: int) -> np.ndarray:
    """Draw ``size`` labels with the given probabilities."""
    labels = list(options)
    p = np.array([options[k] for k in labels], dtype=float)
    return rng.choice(labels, size=size, p=p / p.sum())


def generate(n: int = N_CUSTOMERS, seed: int = SEED) -> dict[str, np.ndarray]:
    """The table as columns; missing values are ``nan`` (numeric) or ``""`` (text)."""
    rng = np.random.default_rng(seed)

    age = np.clip(rng.normal(44, 14, n), 18, 85).round()
    region = choice(rng, {"North": 0.28, "South": 0.24, "East": 0.22, "West": 0.26}, n)
    contract = choice(rng, {"Month-to-month": 0.52, "One year": 0.25, "Two year": 0.23}, n)

    # Longer contracts go with longer tenure.
    scale = np.select([contract == "Two year", contract == "One year"], [42.0, 28.0], 14.0)
    tenure = np.clip(np.ceil(rng.exponential(scale)), 1, 72).astype(int)
    tenure[rng.random(n) < 0.012] = 0  # signed up this month, not billed yet

    payment = choice(
        rng,
        {
            "Electronic check": 0.34,
            "Mailed check": 0.20,
            "Bank transfer": 0.23,
            "Credit card": 0.23,
        },
        n,
    )
    internet = choice(rng, {"Fiber optic": 0.44, "DSL": 0.34, "No internet": 0.22}, n)
    base_charge = np.select([internet == "Fiber optic", internet == "DSL"], [78.0, 55.0], 22.0)
    monthly = np.clip(base_charge + rng.normal(0, 12, n), 18, 120).round(2)
    total = (tenure * monthly * rng.normal(1.0, 0.03, n)).round(2)
    support_calls = rng.poisson(np.where(internet == "Fiber optic", 2.2, 1.4))

    logit = (
        -1.1
        + np.select([contract == "Month-to-month", contract == "One year"], [1.3, -0.4], -1.6)
        - 0.045 * tenure
        + 0.022 * (monthly - 65)
        + 0.38 * (support_calls - 1.7)
        + np.where(payment == "Electronic check", 0.55, 0.0)
        + np.where(internet == "Fiber optic", 0.35, 0.0)
        - 0.012 * (age - 44)
        + np.where(region == "South", 0.2, 0.0)
        + rng.normal(0, 0.6, n)  # what the columns do not explain
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    # Missing values: unbilled new customers, then a few at random.
    total = total.astype(float)
    total[tenure == 0] = np.nan
    total[rng.random(n) < 0.01] = np.nan
    age[rng.random(n) < 0.03] = np.nan
    payment = payment.astype(object)
    payment[rng.random(n) < 0.02] = ""

    customer_id = np.array([f"C{i:05d}" for i in rng.permutation(np.arange(10001, 10001 + n))])
    return {
        "customer_id": customer_id,
        "age": age,
        "region": region,
        "tenure_months": tenure,
        "contract": contract,
        "payment_method": payment,
        "internet_service": internet,
        "monthly_charges": monthly,
        "total_charges": total,
        "support_calls": support_calls,
        "churned": churned,
    }


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def write_csv(columns: dict[str, np.ndarray], path: Path = OUT) -> None:
    """Write the table to ``path`` (through a temporary file, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in zip(*(columns[c] for c in COLUMNS), strict=True):
            writer.writerow([_cell(v) for v in row])
    tmp.replace(path)


if __name__ == "__main__":
    table = generate()
    write_csv(table)
    print(f"wrote {OUT} ({len(table['churned'])} rows, churn rate {table['churned'].mean():.1%})")
