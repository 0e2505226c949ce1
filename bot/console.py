"""What every CLI command shares: consoles, JSON output, errors, the opened context."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy.exc import DatabaseError

from bot.context import ConfigError, Context, open_context
from bot.ingest import IngestError
from store.audit import AuditError
from store.registry import RegistryError
from store.signing import SigningKeyError

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error that says what to do next, and exit."""
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@contextmanager
def opened() -> Iterator[Context]:
    """Open the context for one command, turning known errors into clear messages."""
    try:
        ctx = open_context()
    except (ConfigError, SigningKeyError) as exc:
        fail(str(exc))
    try:
        yield ctx
    except IngestError as exc:
        fail(exc.message)
    except (RegistryError, ConfigError, AuditError, SigningKeyError) as exc:
        fail(str(exc))
    except DatabaseError as exc:
        fail(
            f"the database refused the request ({exc.orig}); check STEWARD_DATABASE_URL "
            "and run `steward db upgrade`"
        )
    finally:
        ctx.close()
