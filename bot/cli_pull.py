"""`steward pull [NAME]`: pull facts now from clusters' registered sources."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from bot.collectors import pull_clusters
from bot.console import fail, opened, out, print_json
from store.db import transaction
from store.registry import get_cluster


def pull_command(
    name: Annotated[
        str | None, typer.Argument(help="Only this cluster (default: every one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Pull facts now from the cluster's registered Prometheus and piqc sources."""
    with opened() as ctx:
        if name is not None:
            with transaction(ctx.sessions) as session:
                cluster = get_cluster(session, name)
                if not (cluster.prometheus_url or cluster.piqc_url):
                    fail(
                        f"cluster '{name}' has no pull source; run `steward cluster set {name} "
                        "--prometheus-url URL` or `--piqc-url URL`"
                    )
        outcomes = asyncio.run(pull_clusters(ctx, names=[name] if name else None, force=True))
    if as_json:
        print_json([outcome.as_json() for outcome in outcomes])
    elif not outcomes:
        out.print(
            "No cluster has a pull source; add one with "
            "`steward cluster set NAME --prometheus-url URL`."
        )
    else:
        table = Table("cluster", "status", "workloads", "facts", "seconds")
        for outcome in outcomes:
            table.add_row(
                outcome.cluster,
                "ok" if outcome.ok else "[red]error[/red]",
                str(outcome.workloads),
                str(outcome.facts),
                f"{outcome.seconds:.1f}",
            )
        out.print(table)
        for outcome in outcomes:
            if outcome.error:
                out.print(f"[red]{outcome.cluster}:[/red] {outcome.error}", highlight=False)
    if any(not outcome.ok for outcome in outcomes):
        raise typer.Exit(1)
