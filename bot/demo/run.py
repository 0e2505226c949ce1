"""`steward demo`: the whole loop on a bundled three-cluster fleet, offline, in seconds.

Everything goes through the real path — registration, ingest, evaluation, the
Slack message builder, the decision path, dry-run actuation, the audit log —
on a fresh embedded database; only the fleet is made up.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from bot import blocks, clusters
from bot.actuation import run_pending
from bot.actuators import DryRunActuator
from bot.config import Settings
from bot.context import Context, open_context
from bot.decisions import decide_finding
from bot.ingest import parse_payload
from bot.pipeline import ingest_and_evaluate
from bot.wording import plan_diff, usd, usd_month
from engine.findings import savings_total
from store.audit import AuditRecord, verify
from store.db import reading
from store.decisions import DecisionRequest
from store.findings import FindingRow, list_findings

DEMO_DB = "steward-demo.db"
DEMO_OPERATOR = "U0DEMOOPS"
DEMO_SECOND_APPROVER = "U0DEMOBOB"
DEMO_BYSTANDER = "U0SOMEONE"
BLOCK_KIT_BUILDER = "https://app.slack.com/block-kit-builder/#"
STEPS = (
    "register clusters",
    "ingest facts",
    "evaluate",
    "render the top finding",
    "approve and actuate (dry run)",
    "dismiss one",
    "verify the audit log",
)


@dataclass
class DemoFiles:
    """Where the demo keeps its database, keys and outputs."""

    database_url: str
    signing_key: Path
    pepper: Path
    message_json: Path

    @classmethod
    def beside(cls, directory: Path, database_url: str | None) -> DemoFiles:
        """Fresh files in `directory`; an existing demo database there is replaced."""
        if database_url is None:
            db = directory / DEMO_DB
            for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                leftover.unlink(missing_ok=True)
            database_url = f"sqlite:///{db}"
        files = cls(
            database_url=database_url,
            signing_key=directory / "steward-demo-signing.key",
            pepper=directory / "steward-demo-pepper.key",
            message_json=directory / "steward-demo-message.json",
        )
        files.signing_key.unlink(missing_ok=True)
        files.pepper.unlink(missing_ok=True)
        return files


def fleet() -> dict[str, Any]:
    """The bundled demo fleet: three clusters, two providers, three regions."""
    text = resources.files("bot.demo").joinpath("fleet.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def block_kit_link(message: blocks.Message) -> str:
    """A Block Kit Builder link that opens the message for a look."""
    document = json.dumps({"blocks": message.blocks}, separators=(",", ":"))
    return BLOCK_KIT_BUILDER + urllib.parse.quote(document, safe="")


def _findings_table(rows: list[FindingRow]) -> Table:
    table = Table(title="Open findings", title_justify="left")
    table.add_column("id")
    table.add_column("rule", no_wrap=True)
    for column in ("cluster", "subject", "$/month", "confidence"):
        table.add_column(column, justify="right" if column == "$/month" else "left")
    for row in rows:
        table.add_row(
            row.public_id,
            row.rule,
            row.cluster or "(fleet)",
            row.subject.rsplit("/", 1)[-1],
            usd(float(row.monthly_usd)),
            row.confidence,
        )
    return table


def _message_text(message: blocks.Message) -> str:
    lines: list[str] = []
    for block in message.blocks:
        text = block.get("text", {}).get("text") if isinstance(block.get("text"), dict) else None
        if text:
            lines.append(text)
        for element in block.get("elements", []):
            if element.get("type") == "button":
                lines.append(f"[ {element['text']['text']} ]")
            elif isinstance(element.get("text"), str):
                lines.append(element["text"])
    return "\n".join(lines)


def _audit_tail(ctx: Context, count: int = 8) -> Table:
    table = Table(title="Audit log (newest records)", title_justify="left")
    for column in ("seq", "actor", "action", "subject"):
        table.add_column(column)
    with reading(ctx.sessions) as session:
        records = session.query(AuditRecord).order_by(AuditRecord.seq.desc()).limit(count).all()
        for record in reversed(records):
            table.add_row(str(record.seq), record.actor, record.action, record.subject)
    return table


def run_demo(
    console: Console,
    directory: Path,
    database_url: str | None = None,
    post: Callable[[Context, FindingRow], None] | None = None,
) -> bool:
    """Play the loop; return True when the audit log verifies at the end."""
    files = DemoFiles.beside(directory, database_url)
    settings = Settings(
        database_url=files.database_url,
        signing_key_file=files.signing_key,
        key_pepper_file=files.pepper,
        key_pepper=None,
        price_book=None,
        engine_config=None,
        approvers=[DEMO_OPERATOR, DEMO_SECOND_APPROVER],
        actuator="dry-run",
    )
    ctx = open_context(settings)
    try:
        return _play(console, ctx, files, post)
    finally:
        ctx.close()


def _play(
    console: Console,
    ctx: Context,
    files: DemoFiles,
    post: Callable[[Context, FindingRow], None] | None,
) -> bool:
    demo = fleet()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    ) as progress:
        task = progress.add_task(STEPS[0], total=len(STEPS))

        for cluster in demo["clusters"]:
            clusters.add_cluster(
                ctx, cluster["name"], cluster["provider"], cluster["region"], actor="demo"
            )
        progress.update(task, advance=1, description=STEPS[1])
        for cluster in demo["clusters"]:
            payload = {
                "schemaVersion": "piqc-scan.v0.1",
                "cluster_id": cluster["name"],
                "workloads": cluster["workloads"],
            }
            ingest_and_evaluate(ctx, cluster["name"], parse_payload(payload), "demo")
        progress.update(task, advance=1, description=STEPS[2])
        with reading(ctx.sessions) as session:
            rows = list_findings(session)
        progress.update(task, advance=1, description=STEPS[3])
        console.rule("[bold]1. Findings")
        console.print(_findings_table(rows))
        total = savings_total(row.to_engine() for row in rows)
        console.print(
            f"Open savings across {len(demo['clusters'])} clusters, each dollar counted once: "
            f"[bold green]{usd_month(total)}[/bold green]"
        )

        # The largest saving that approval can carry out by itself.
        top = next(r for r in rows if r.kind == "savings" and (r.plan or {}).get("mode") == "patch")
        message = blocks.finding_message(top)
        files.message_json.write_text(json.dumps({"blocks": message.blocks}, indent=2) + "\n")
        console.rule(f"[bold]2. The top finding as Slack shows it ({top.public_id})")
        console.print(Panel(_message_text(message), title="#gpu-findings", expand=False))
        console.print(f"Block Kit JSON: {files.message_json}")
        console.print(f"Open in Block Kit Builder: {block_kit_link(message)}", soft_wrap=True)
        if post is not None:
            post(ctx, top)

        progress.update(task, advance=1, description=STEPS[4])
        console.rule("[bold]3. Approval and dry-run actuation")
        approval = decide_finding(
            ctx, DecisionRequest(top.id, "approve", DEMO_OPERATOR), check_approver=True
        )
        console.print(
            f"{top.public_id} approved by <@{DEMO_OPERATOR}> · audit #{approval.audit_seq}"
        )
        late = decide_finding(
            ctx, DecisionRequest(top.id, "dismiss", DEMO_SECOND_APPROVER), check_approver=True
        )
        console.print(f"A late click by <@{DEMO_SECOND_APPROVER}>: {late.status.replace('_', ' ')}")
        stranger = decide_finding(
            ctx, DecisionRequest(top.id, "approve", DEMO_BYSTANDER), check_approver=True
        )
        console.print(f"A click by <@{DEMO_BYSTANDER}>, not an approver: {stranger.status}")
        for done in asyncio.run(run_pending(ctx, DryRunActuator())):
            console.print(f"{done.finding}: {done.status} — {done.detail}")
            for line in plan_diff(top.plan):
                console.print(f"  would patch {line}", highlight=False)

        progress.update(task, advance=1, description=STEPS[5])
        console.rule("[bold]4. Dismissal with a reason")
        other = next(r for r in rows if r.id != top.id and r.kind == "risk")
        dismissal = decide_finding(
            ctx,
            DecisionRequest(other.id, "dismiss", DEMO_OPERATOR, reason="planned"),
            check_approver=True,
        )
        console.print(
            f"{other.public_id} ({other.rule}) dismissed as 'planned' · "
            f"audit #{dismissal.audit_seq}"
        )

        progress.update(task, advance=1, description=STEPS[6])
        console.rule("[bold]5. Audit log")
        console.print(_audit_tail(ctx))
        with reading(ctx.sessions) as session:
            report = verify(session)
        progress.update(task, advance=1)
    verdict = "[green]verified[/green]" if report.ok else "[red]FAILED[/red]"
    console.print(
        f"steward audit verify: {verdict} — {report.records} records, head {report.head_hash[:16]}…"
    )
    console.print(
        f"\nDemo database: {files.database_url}. Look around with "
        f"`STEWARD_DATABASE_URL={files.database_url} STEWARD_SIGNING_KEY_FILE={files.signing_key} "
        f"STEWARD_KEY_PEPPER_FILE={files.pepper} steward findings --all`."
    )
    return report.ok
