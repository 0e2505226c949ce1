"""Units shared by every figure the engine prints: one place for each."""

from __future__ import annotations

# OpenCost and the cloud price pages use the same 730-hour month.
HOURS_PER_MONTH = 730
# Capacity figures are decimal gigabytes, as on GPU data sheets.
GB = 1e9


def monthly(usd_per_hour: float) -> float:
    """USD per month for a steady hourly cost."""
    return usd_per_hour * HOURS_PER_MONTH


def cents(usd: float) -> float:
    """Round a dollar figure to cents."""
    return round(usd + 0.0, 2)
