"""The price book: USD per GPU-hour by catalog GPU id."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict

from engine.catalog import Catalog, default_catalog


class PriceBook(BaseModel):
    """GPU id → USD per GPU-hour, with where the prices came from."""

    model_config = ConfigDict(frozen=True)

    prices: dict[str, float]
    source: str = ""
    as_of: str = ""

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Any],
        *,
        source: str = "custom price book",
        as_of: str = "",
        catalog: Catalog | None = None,
    ) -> PriceBook:
        """A validated price book from `{gpu_id: usd_per_hour}` or `{prices: {...}, source, as_of}`.

        Raises ValueError naming the first bad entry.
        """
        if not isinstance(mapping, Mapping):
            raise ValueError("a price book must be a mapping of GPU id to USD per GPU-hour")
        if isinstance(mapping.get("prices"), Mapping):
            source = str(mapping.get("source") or source)
            as_of = str(mapping.get("as_of") or as_of)
            mapping = mapping["prices"]
        cat = catalog or default_catalog()
        prices: dict[str, float] = {}
        for gpu_id, raw in mapping.items():
            prices[_known(cat, gpu_id)] = _usd(gpu_id, raw)
        if not prices:
            raise ValueError("the price book lists no GPU; give at least one GPU id and its price")
        return cls(prices=prices, source=source, as_of=as_of)

    def price(self, gpu_id: str) -> float | None:
        """USD per GPU-hour for a catalog GPU id, or None when the book has no price."""
        return self.prices.get(gpu_id)


def _known(catalog: Catalog, gpu_id: Any) -> str:
    if not isinstance(gpu_id, str) or catalog.gpu(gpu_id) is None:
        hint = catalog.normalise_gpu(gpu_id) if isinstance(gpu_id, str) else None
        suggestion = (
            f"; did you mean '{hint}'?" if hint else f"; known ids: {', '.join(catalog.gpu_ids)}"
        )
        raise ValueError(f"price book entry '{gpu_id}' is not a catalog GPU id{suggestion}")
    return gpu_id


def _usd(gpu_id: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(
            f"price book entry '{gpu_id}': {raw!r} is not a number of USD per GPU-hour"
        )
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"price book entry '{gpu_id}': {raw!r} must be a positive, finite USD per GPU-hour"
        )
    return value


def default_price_book() -> PriceBook:
    """The bundled price book (AWS us-east-1 on-demand)."""
    text = resources.files("engine").joinpath("data", "prices.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return PriceBook.from_mapping(
        data["prices"], source=str(data["source"]), as_of=str(data["as_of"])
    )
