"""The scenario corpus and piqc bundle kept in tests/data match the shared originals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import DATA

# Only this test looks outside the repository: a fresh clone has no ../shared.
SHARED = Path(__file__).resolve().parents[2] / "shared"
COPIED = {"scenarios": "scenarios", "reference/piqc-facts-gke-t4.json": "reference"}


def _files(root: Path, relative: str) -> dict[str, bytes]:
    base = root / relative
    if base.is_file():
        return {relative: base.read_bytes()}
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(base.rglob("*"))
        if path.is_file()
    }


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared beside the repository")
@pytest.mark.parametrize("relative", sorted(COPIED))
def test_in_repository_copy_is_byte_identical(relative: str) -> None:
    shared = _files(SHARED, relative)
    assert shared, f"{SHARED / relative} holds no files"
    assert _files(DATA, relative) == shared


def test_in_repository_data_is_present() -> None:
    assert len(list((DATA / "scenarios").glob("*.json"))) >= 14
    assert (DATA / "reference" / "piqc-facts-gke-t4.json").is_file()
