"""`steward audit ...`: verify, export, checkpoint and re-key the signed audit log."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot.console import fail, opened
from store.audit import (
    Checkpoint,
    VerifyReport,
    checkpoint,
    export_jsonl,
    read_checkpoints,
    rotate_signing_key,
    verify,
)
from store.db import reading, transaction
from store.signing import write_new_key

audit_app = typer.Typer(
    help="Verify, export, checkpoint and re-key the signed audit log.", no_args_is_help=True
)


def _print_report(report: VerifyReport) -> None:
    if report.ok:
        latest = report.latest_checkpoint
        latest_text = "" if latest is None else f", latest at size {latest}"
        typer.echo(
            f"audit log verified: {report.records} records, head {report.head_hash}, "
            f"{report.checkpoints} checkpoints{latest_text}"
        )
        typer.echo(
            f"compare the size ({report.head_seq}) with your last exported checkpoint: "
            "records removed after the latest checkpoint leave no other trace"
        )
        return
    bad = report.first_bad
    assert bad is not None
    typer.echo(
        f"audit log FAILED verification at record {bad.seq}: {bad.reason} ({bad.detail}); "
        f"the log has {report.records} records. Keep a copy of the database for investigation "
        "and compare with your latest export (`steward audit export`).",
        err=True,
    )


@audit_app.command("verify")
def verify_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(help="Hex public key allowed to sign (repeat); default: the keyring."),
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(help="An earlier export whose checkpoints the log must still extend."),
    ] = None,
) -> None:
    """Recompute every hash, link and signature; exit 1 at the first bad record."""
    known: list[Checkpoint] = []
    if against is not None:
        try:
            with against.open(encoding="utf-8") as handle:
                known = read_checkpoints(handle)
        except (OSError, ValueError, KeyError) as exc:
            fail(f"cannot read checkpoints from {against}: {exc}; pass a file from `audit export`")
    with opened() as ctx, reading(ctx.sessions) as session:
        report = verify(session, trusted_keys=trusted_key or None, known_checkpoints=known)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export_command(
    fmt: Annotated[str, typer.Option("--format", help="Output format (jsonl).")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="Write to FILE instead of stdout.")] = None,
) -> None:
    """Export the log, keyring and checkpoints for offline verification."""
    if fmt != "jsonl":
        fail(f"unknown format {fmt!r}; the only format is jsonl")
    with opened() as ctx, reading(ctx.sessions) as session:
        if out is None:
            export_jsonl(session, sys.stdout)
            return
        partial = out.with_name(out.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8") as handle:
                count = export_jsonl(session, handle)
            os.replace(partial, out)  # never leave a half-written export under the real name
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror}; choose a writable --out path")
    typer.echo(f"exported {count} records to {out}", err=True)


@audit_app.command("checkpoint")
def checkpoint_command() -> None:
    """Sign a checkpoint of the log's current size and head now."""
    with opened() as ctx, transaction(ctx.sessions) as session:
        cp = checkpoint(session, ctx.signer)
    typer.echo(f"checkpoint at size {cp.size}, head {cp.head_hash}, signed by key {cp.key_id}")


@audit_app.command("rotate-signing-key")
def rotate_command(
    actor: Annotated[str, typer.Option("--as", help="Who is rotating the key.")] = "cli",
) -> None:
    """Replace the signing key; the rotation is recorded and signed by both keys.

    The new key is written next to the current file first and moved over it
    only once the rotation is committed, so a failure leaves the old key in use.
    """
    with opened() as ctx:
        path = ctx.settings.signing_key_file
        pending = path.with_name(path.name + ".new")
        try:
            new = write_new_key(pending)
        except FileExistsError:
            fail(
                f"{pending} is left from an earlier rotation; if `steward audit verify` passes "
                f"and the log's last rotation names that key, move it to {path}; otherwise "
                "delete it and retry"
            )
        old = ctx.signer
        try:
            with transaction(ctx.sessions) as session:
                entry = rotate_signing_key(session, old, new, actor=actor)
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
        try:
            os.replace(pending, path)
        except OSError as exc:
            fail(
                f"the rotation is recorded (seq {entry.seq}) but {pending} could not replace "
                f"{path} ({exc.strerror}); move it there by hand before appending again"
            )
    typer.echo(
        f"signing key rotated: {old.key_id} -> {new.key_id} (record {entry.seq}); "
        "restart every Steward process so it loads the new key"
    )
