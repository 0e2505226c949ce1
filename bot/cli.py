"""The `steward` command line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from bot import clusters
from bot.cli_actuate import actuate_command, revert_command
from bot.cli_audit import audit_app
from bot.cli_decide import approve_command, digest_command, dismiss_command
from bot.cli_demo import demo_command
from bot.cli_pull import pull_command
from bot.console import fail, opened, out, print_json
from bot.explain import UnknownFinding, explain
from bot.ingest import decode_json, parse_payload
from bot.pipeline import ingest_and_evaluate, scan
from bot.wording import finding_json, usd, usd_month
from engine.findings import savings_total
from store.db import reading, transaction
from store.findings import list_findings, parse_id
from store.migrate import current_revision, upgrade

app = typer.Typer(
    help="Steward: model-aware optimisation for GPU inference fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cluster_app = typer.Typer(help="Register clusters and manage their API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.command("demo")(demo_command)
app.command("actuate")(actuate_command)
app.command("revert")(revert_command)
app.command("pull")(pull_command)
app.command("approve")(approve_command)
app.command("dismiss")(dismiss_command)
app.command("digest")(digest_command)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date."""
    with opened() as ctx:
        upgrade(ctx.engine)
        out.print(f"database at revision {current_revision(ctx.engine)}")


PrometheusUrl = Annotated[
    str | None,
    typer.Option(help='Prometheus to pull DCGM, vLLM and kube-state-metrics from ("" clears).'),
]
PrometheusTokenFile = Annotated[
    str | None,
    typer.Option(help="File holding a bearer token for that Prometheus, read at each pull."),
]
PiqcUrl = Annotated[
    str | None, typer.Option(help='URL serving a piqc facts bundle to pull ("" clears).')
]
PullInterval = Annotated[
    int | None,
    typer.Option(help="Seconds between pulls (0: STEWARD_PULL_INTERVAL_SECONDS).", min=0),
]


@cluster_app.command("add")
def cluster_add(
    name: str,
    provider: Annotated[str, typer.Option(help="Cloud or platform, e.g. aws, gcp, azure, onprem.")],
    region: Annotated[str, typer.Option(help="Region, e.g. us-east-1.")],
    prometheus_url: PrometheusUrl = None,
    prometheus_token_file: PrometheusTokenFile = None,
    piqc_url: PiqcUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a cluster and print its API key (shown once)."""
    sources = clusters.PullSources(
        prometheus_url=prometheus_url,
        prometheus_token_file=prometheus_token_file,
        piqc_url=piqc_url,
    )
    with opened() as ctx:
        token = clusters.add_cluster(ctx, name, provider, region, actor="cli", sources=sources)
    if as_json:
        print_json({"cluster": name, "api_key": token})
        return
    out.print(f"Registered cluster [bold]{name}[/bold] ({provider}, {region}).")
    out.print("API key (shown once, store it now):")
    out.print(token, highlight=False, soft_wrap=True)
    out.print(
        f"Push facts with: piqc scan --push-url http://STEWARD:8000 --cluster-id {name} "
        "--api-key <key>",
        highlight=False,
    )


@cluster_app.command("set")
def cluster_set(
    name: str,
    prometheus_url: PrometheusUrl = None,
    prometheus_token_file: PrometheusTokenFile = None,
    piqc_url: PiqcUrl = None,
    pull_interval: PullInterval = None,
    kubeconfig: Annotated[
        str | None, typer.Option(help="kubeconfig the Kubernetes actuator uses (path).")
    ] = None,
    k8s_api_url: Annotated[
        str | None, typer.Option(help="API server URL for the Kubernetes actuator.")
    ] = None,
    k8s_token_file: Annotated[
        str | None, typer.Option(help="File holding the actuator's bearer token.")
    ] = None,
    k8s_ca_file: Annotated[
        str | None, typer.Option(help="CA bundle of the API server (PEM file).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a cluster's pull sources, pull interval and Kubernetes API access."""
    sources = clusters.PullSources(
        prometheus_url=prometheus_url,
        prometheus_token_file=prometheus_token_file,
        piqc_url=piqc_url,
        pull_interval_seconds=pull_interval,
        kubeconfig=kubeconfig,
        k8s_api_url=k8s_api_url,
        k8s_token_file=k8s_token_file,
        k8s_ca_file=k8s_ca_file,
    )
    with opened() as ctx:
        row = clusters.set_sources(ctx, name, sources, actor="cli")
    if as_json:
        print_json(row.as_json())
        return
    pulled = [
        f"{kind} {url}"
        for kind, url in (("Prometheus", row.prometheus_url), ("piqc", row.piqc_url))
        if url
    ]
    out.print(
        f"Cluster [bold]{name}[/bold] pulls from: {', '.join(pulled) or 'nothing (push only)'}.",
        highlight=False,
    )
    if pulled:
        out.print(f"Pull now with `steward pull {name}`.", highlight=False)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


@cluster_app.command("list")
def cluster_list(as_json: JsonFlag = False) -> None:
    """Clusters, key status, last facts time and last pull status."""
    with opened() as ctx:
        rows = clusters.list_clusters(ctx)
    if as_json:
        print_json([row.as_json() for row in rows])
        return
    if not rows:
        out.print("No clusters yet: `steward cluster add NAME --provider P --region R`.")
        return
    table = Table("provider", "region", "keys", "last facts", "last pull")
    table.columns.insert(0, Column("cluster", no_wrap=True))
    errors: list[tuple[str, str]] = []
    for row in rows:
        if not (row.prometheus_url or row.piqc_url):
            pull = "push only"
        elif row.last_pull_status is None:
            pull = "pending"
        else:
            pull = f"{row.last_pull_status} {_when(row.last_pull_at)}"
            if row.last_pull_status == "error":
                pull += f" ({row.pull_failures}x)"
                errors.append((row.name, row.last_pull_error or ""))
        table.add_row(
            row.name, row.provider, row.region, row.key_status, _when(row.last_facts_at), pull
        )
    out.print(table)
    for cluster, error in errors:
        out.print(f"[red]{cluster}:[/red] {error}", highlight=False, soft_wrap=True)


@cluster_app.command("rotate-key")
def cluster_rotate_key(
    name: str,
    grace: Annotated[
        float | None, typer.Option(help="Hours the old key keeps working (default 24).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new key; the old one keeps working for the grace period."""
    with opened() as ctx:
        hours = ctx.settings.key_grace_hours if grace is None else grace
        token, old_expires = clusters.rotate_key(ctx, name, hours, actor="cli")
    if as_json:
        print_json({"cluster": name, "api_key": token, "old_key_expires_at": old_expires})
        return
    out.print(f"New API key for [bold]{name}[/bold] (shown once):")
    out.print(token, highlight=False, soft_wrap=True)
    out.print(f"The previous key stops working at {old_expires:%Y-%m-%d %H:%M UTC}.")


@cluster_app.command("revoke-key")
def cluster_revoke_key(name: str) -> None:
    """Every key of the cluster stops working at once."""
    with opened() as ctx:
        revoked = clusters.revoke_keys(ctx, name, actor="cli")
    out.print(
        f"Revoked {len(revoked)} key(s) of {name}. "
        f"Issue a new one with `steward cluster rotate-key {name}`."
    )


@app.command("ingest")
def ingest_file(
    file: Annotated[Path, typer.Argument(help="piqc facts bundle or ingest payload (JSON).")],
    cluster: Annotated[str, typer.Option(help="The registered cluster these facts describe.")],
) -> None:
    """Ingest a piqc facts bundle (`objects`) or an ingest payload (`workloads`)."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    with opened() as ctx:
        parsed = parse_payload(decode_json(raw), cluster=cluster)
        if parsed.cluster_id != cluster:
            fail(f"{file} describes cluster '{parsed.cluster_id}', not '{cluster}'")
        reply = ingest_and_evaluate(ctx, cluster, parsed, "file")
    findings = sum(len(item["recommendations"]) for item in reply)
    out.print(f"Ingested {len(reply)} workload(s) into {cluster}; {findings} finding(s).")


def _findings_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "rule", "cluster", "subject", "$/month", "kind", "confidence", "status"):
        table.add_column(column, justify="right" if column == "$/month" else "left")
    for row in rows:
        table.add_row(
            row["id"],
            row["rule"],
            row["cluster"] or "(fleet)",
            row["subject"],
            usd(row["monthly_usd"]),
            row["kind"],
            row["confidence"],
            row["status"],
        )
    return table


@app.command("scan")
def scan_now(as_json: JsonFlag = False) -> None:
    """Evaluate the fleet now and store the findings; list facts missing per cluster."""
    with opened() as ctx:
        result = scan(ctx)
        with transaction(ctx.sessions) as session:
            open_rows = [row.as_json() for row in list_findings(session)]
    gaps: dict[str, list[dict[str, Any]]] = {}
    for gap in result.evaluation.gaps:
        gaps.setdefault(gap.cluster or "(fleet)", []).append(
            {"subject": gap.subject, "rule": gap.rule, "missing": gap.missing}
        )
    savings = savings_total(result.evaluation.findings)
    if as_json:
        print_json(
            {
                "findings": len(result.evaluation.findings),
                "opened": [row.public_id for row in result.reconciled.opened],
                "resolved": [row.public_id for row in result.reconciled.resolved],
                "savings_monthly_usd": savings,
                "facts_missing": gaps,
            }
        )
        return
    out.print(_findings_table(open_rows, "Open findings"))
    out.print(
        f"{len(result.evaluation.findings)} finding(s): {len(result.reconciled.opened)} new, "
        f"{len(result.reconciled.resolved)} resolved. "
        f"Open savings (each dollar counted once): [bold]{usd_month(savings)}[/bold]"
    )
    for cluster, missing in sorted(gaps.items()):
        out.print(f"[yellow]facts missing in {cluster}:[/yellow]")
        for item in missing:
            out.print(f"  {item['subject']} ({item['rule']}): {', '.join(item['missing'])}")


@app.command("findings")
def findings_list(
    as_json: JsonFlag = False,
    all_states: Annotated[bool, typer.Option("--all", help="Every state, not only open.")] = False,
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
) -> None:
    """Open findings (`--all`: every state)."""
    with opened() as ctx, reading(ctx.sessions) as session:
        rows = [
            finding_json(row)
            for row in list_findings(session, include_all=all_states, cluster=cluster)
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("No findings. Push facts, then run `steward scan`.")
        return
    out.print(_findings_table(rows, "Findings" if all_states else "Open findings"))


@app.command("explain")
def explain_finding(
    finding_id: Annotated[str, typer.Argument(metavar="ID", help="Finding id: F-12 or 12.")],
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Only the template's text; never call the LLM.")
    ] = False,
) -> None:
    """The finding's detailed explanation."""
    number = parse_id(finding_id)
    if number is None:
        fail(f"'{finding_id}' is not a finding id; use F-12 or 12 (`steward findings` lists them)")
    with opened() as ctx:
        try:
            explanation = explain(ctx, number, use_llm=not no_llm)
        except UnknownFinding as exc:
            fail(str(exc))
    # Plain output: the text is Slack mrkdwn, which rich would read as its own markup.
    typer.echo(explanation.text)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
) -> None:
    """Run the HTTP API, the Slack endpoint and the scheduler."""
    import gc
    import logging

    import uvicorn

    from bot.api import create_app

    # Scheduler and pull messages go to stderr beside uvicorn's own.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s %(message)s")
    with opened() as ctx:
        served = create_app(ctx, scheduler=True)
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes, which would otherwise pause the event loop
        # (and Slack's acks) for 100 ms or more.
        gc.collect()
        gc.freeze()
        uvicorn.run(served, host=host, port=port, log_level="info")


def main() -> None:
    """Entry point of the `steward` console script."""
    app()
