"""What every entry point needs: settings, database, keys — opened in one place."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from engine.capacity import CapacityConstants
from engine.prices import PriceBook, default_price_book
from engine.thresholds import Thresholds
from store.db import make_engine, make_sessionmaker
from store.migrate import current_revision, head_revision, upgrade
from store.signing import Signer, SigningKeyError, load_signer, read_private_file


class ConfigError(RuntimeError):
    """A configuration problem; the message says how to fix it."""


@dataclass
class Context:
    """The opened resources of one Steward process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    signer: Signer
    pepper: bytes
    prices: PriceBook
    thresholds: Thresholds
    constants: CapacityConstants

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"the {what} {path} is not valid YAML/JSON: {exc}") from exc


def load_price_book(path: Path | None) -> PriceBook:
    """The price book in `path` (GPU id → USD per GPU-hour), or the bundled one.

    The file replaces the bundled book wholesale: a GPU it does not list has
    no price, and findings that need one say so.
    """
    if path is None:
        return default_price_book()
    document = _read_yaml(path, "price book")
    if not isinstance(document, dict):
        raise ConfigError(f"the price book {path} must map GPU ids to USD per GPU-hour")
    try:
        return PriceBook.from_mapping(document, source=str(path))
    except ValueError as exc:
        raise ConfigError(f"the price book {path} is not valid: {exc}") from exc


def load_engine_config(path: Path | None) -> tuple[Thresholds, CapacityConstants]:
    """Thresholds and capacity constants, with overrides from `path` when given.

    The file has two optional sections, `thresholds:` and `capacity:`, each a
    mapping of the names in `engine/thresholds.py` and `engine/capacity.py`.
    """
    if path is None:
        return Thresholds(), CapacityConstants()
    document = _read_yaml(path, "engine configuration") or {}
    if not isinstance(document, dict) or set(document) - {"thresholds", "capacity"}:
        raise ConfigError(f"{path} may only hold the sections `thresholds` and `capacity`")
    try:
        return (
            Thresholds.model_validate(document.get("thresholds") or {}),
            CapacityConstants.model_validate(document.get("capacity") or {}),
        )
    except ValidationError as exc:
        raise ConfigError(f"{path} is not valid: {exc}") from exc


def _pepper(settings: Settings) -> bytes:
    """The API key pepper: from the environment, or its own 0600 file.

    A leaked pepper lets anyone holding a copy of the database test guesses
    at API keys offline, so it never lives in the database.
    """
    if settings.key_pepper is not None:
        return settings.key_pepper.get_secret_value().encode()
    return read_private_file(
        settings.key_pepper_file,
        lambda: base64.b64encode(secrets.token_bytes(32)) + b"\n",
        "API key pepper",
    )


def open_context(settings: Settings | None = None, *, migrate: bool = True) -> Context:
    """Open the database (upgrading its schema when asked) and load the keys."""
    settings = settings or Settings()
    prices = load_price_book(settings.price_book)
    thresholds, constants = load_engine_config(settings.engine_config)
    try:
        signer = load_signer(settings.signing_key_file)
        pepper = _pepper(settings)
    except SigningKeyError as exc:
        raise ConfigError(str(exc)) from exc
    engine = make_engine(settings.database_url)
    if migrate and current_revision(engine) != head_revision():
        upgrade(engine)
    return Context(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        signer=signer,
        pepper=pepper,
        prices=prices,
        thresholds=thresholds,
        constants=constants,
    )
