"""Figures the benchmarks print: percentiles of timings, and timing a call n times."""

from __future__ import annotations

import time
from collections.abc import Callable


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt(values: list[float], digits: int = 2) -> str:
    """``p50 ... ms   p95 ... ms`` of timings in seconds."""
    p50, p95 = pct(values, 0.5) * 1000, pct(values, 0.95) * 1000
    return f"p50 {p50:7.{digits}f} ms   p95 {p95:7.{digits}f} ms"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """``fn()`` called ``n`` times; each call's duration in seconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out
