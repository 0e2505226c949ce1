"""`steward actuate` and `steward revert`: carry out approved changes, or undo one."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from bot.actuation import Processed, RevertRefused, actuate_and_report, request_revert
from bot.console import fail, opened, out
from store.findings import parse_id


def _report(done: list[Processed]) -> None:
    if not done:
        out.print("Nothing to carry out: no approved change is waiting.")
    for processed in done:
        out.print(
            f"{processed.finding} ({processed.kind}): {processed.status} — {processed.detail}",
            highlight=False,
        )


def actuate_command() -> None:
    """Carry out every approved change waiting in the outbox (STEWARD_ACTUATOR decides how)."""
    with opened() as ctx:
        done = asyncio.run(actuate_and_report(ctx))
    _report(done)


def revert_command(
    finding: Annotated[str, typer.Argument(help="The finding whose change to undo, e.g. F-12.")],
    actor: Annotated[str, typer.Option("--as", help="Who asks for the revert.")],
) -> None:
    """Undo an actuated change with its stored inverse plan, through the same outbox."""
    finding_id = parse_id(finding)
    if finding_id is None:
        fail(f"'{finding}' is not a finding id; use the form F-12")
    with opened() as ctx:
        try:
            request_revert(ctx, finding_id, f"cli:{actor}")
        except RevertRefused as exc:
            fail(str(exc))
        done = asyncio.run(actuate_and_report(ctx))
    _report(done)
