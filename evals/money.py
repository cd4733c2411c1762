"""How Docket writes an amount of money, on every page, export, command and API message.

The judge API names no currency; Docket writes dollars, as Scorable's own app does.
"""

from __future__ import annotations

import math


def format_cost(value: float | None) -> str:
    """ "$12.50" from a dollar up; below, 4 decimals ("$0.0123"), or 3 significant digits when 4
    decimals would hide them ("$0.000123", a cost per item)."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0.00"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = 4
    if abs(value) < 0.01:
        decimals = max(4, 2 - math.floor(math.log10(abs(value))))
    return f"${value:.{decimals}f}"


def format_cap(max_cost: float | None) -> str:
    """A spending cap as pages write it: its amount, or "no cap" when the run has none."""
    return format_cost(max_cost) if max_cost is not None else "no cap"
