"""Engine evaluation time and peak memory for 1,000 / 10,000 / 100,000 GPUs.

Run explicitly: `STEWARD_BENCH=1 pytest tests/bench -s`. Prints figures, asserts no timings.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections import Counter

import pytest

from engine.evaluate import evaluate
from engine.prices import default_price_book
from tests.bench.fleetgen import generate_fleet, gpu_count

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(os.environ.get("STEWARD_BENCH") != "1", reason="set STEWARD_BENCH=1"),
]


@pytest.mark.parametrize("gpus", [1_000, 10_000, 100_000])
def test_evaluation_time_and_memory(gpus: int) -> None:
    started = time.perf_counter()
    fleet = generate_fleet(gpus)
    built = time.perf_counter() - started
    workloads = sum(len(c.workloads) for c in fleet.clusters)
    prices = default_price_book()

    runs = []
    for _ in range(3):
        started = time.perf_counter()
        evaluation = evaluate(fleet, prices)
        runs.append(time.perf_counter() - started)

    # The snapshot is long-lived: a caller that freezes it keeps the cyclic collector from
    # rescanning it during evaluation. Shown separately, since it is the caller's choice.
    gc.freeze()
    try:
        started = time.perf_counter()
        evaluate(fleet, prices)
        frozen = time.perf_counter() - started
    finally:
        gc.unfreeze()

    tracemalloc.start()
    evaluate(fleet, prices)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    rules = Counter(f.rule for f in evaluation.findings)
    print(
        f"\n{gpu_count(fleet):>7} GPUs, {len(fleet.clusters)} clusters, {workloads} workloads "
        f"(built in {built:.2f} s): evaluate best {min(runs):.3f} s, "
        f"median {sorted(runs)[1]:.3f} s, with the snapshot gc-frozen {frozen:.3f} s, "
        f"peak {peak / 1e6:.1f} MB; "
        f"{len(evaluation.findings)} findings, {len(evaluation.gaps)} gaps, "
        f"savings ${evaluation.savings_total_usd():,.0f}/month"
    )
    print("   " + ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items())))
    assert evaluation.findings
