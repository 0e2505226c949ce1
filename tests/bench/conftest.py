"""Benchmarks print figures and are run on purpose: `STEWARD_BENCH=1 pytest tests/bench -s`."""

from __future__ import annotations

import os
from pathlib import Path


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Leave benchmarks out of the ordinary test run."""
    if os.environ.get("STEWARD_BENCH") == "1":
        return None
    return collection_path.name.startswith("test_")
