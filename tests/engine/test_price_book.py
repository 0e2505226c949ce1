"""The price book: the bundled AWS prices and validation of replacements."""

from __future__ import annotations

import math

import pytest

from engine.prices import PriceBook, default_price_book


def test_default_price_book_carries_aws_prices_with_source_and_date() -> None:
    book = default_price_book()
    assert book.prices == {
        "B200-180GB": 14.24,
        "H200-141GB": 7.91,
        "H100-SXM-80GB": 6.88,
        "A100-SXM-80GB": 3.43,
        "A100-40GB": 2.74,
        "L40S-48GB": 1.861,
        "A10G-24GB": 1.006,
        "L4-24GB": 0.805,
        "T4-16GB": 0.526,
    }
    assert "AWS us-east-1" in book.source
    assert book.as_of == "2026-07-20"
    assert book.price("MI300X-192GB") is None


def test_mapping_with_prices_section_keeps_source() -> None:
    book = PriceBook.from_mapping({"prices": {"L4-24GB": 0.7}, "source": "GCP", "as_of": "2026"})
    assert (book.price("L4-24GB"), book.source, book.as_of) == (0.7, "GCP", "2026")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"H100": 3.0}, "'H100' is not a catalog GPU id; did you mean 'H100-SXM-80GB'"),
        ({"FOO-1GB": 3.0}, "'FOO-1GB' is not a catalog GPU id; known ids"),
        ({"T4-16GB": -1}, "'T4-16GB': -1 must be a positive"),
        ({"T4-16GB": 0}, "'T4-16GB': 0 must be a positive"),
        ({"T4-16GB": math.inf}, "must be a positive, finite"),
        ({"T4-16GB": math.nan}, "must be a positive, finite"),
        ({"T4-16GB": "cheap"}, "'cheap' is not a number"),
        ({"T4-16GB": True}, "True is not a number"),
        ({}, "lists no GPU"),
    ],
)
def test_bad_entries_are_named(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="price book") as error:
        PriceBook.from_mapping(mapping)
    assert message in str(error.value)
