"""After approval: plan → outbox → claim → re-check → actuator → result, each step audited."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session

from bot.actuators import ActuationRequest, ActuationResult, Actuator, ClusterAccess, DryRunActuator
from bot.actuators.kubernetes import KubernetesActuator
from bot.actuators.webhook import WebhookActuator
from bot.context import ConfigError, Context
from bot.notify import update_message
from bot.pipeline import evaluate_now
from bot.slack.client import make_client
from bot.wording import render
from engine.plans import ActionPlan, plan_for
from store import actuations
from store.audit import append
from store.db import reading, transaction, utcnow
from store.findings import FindingRow, parse_id, stringify
from store.models import Cluster

log = logging.getLogger(__name__)

APPROVED = "approved"
ACTUATING = "actuating"
ACTUATED = "actuated"
FAILED = "failed"
STALE = "stale"


def make_actuator(ctx: Context) -> Actuator:
    """The actuator STEWARD_ACTUATOR names."""
    settings = ctx.settings
    if settings.actuator == "webhook":
        if not settings.webhook_url or settings.webhook_secret is None:
            raise ConfigError(
                "STEWARD_ACTUATOR=webhook needs STEWARD_WEBHOOK_URL and STEWARD_WEBHOOK_SECRET"
            )
        return WebhookActuator(
            settings.webhook_url, settings.webhook_secret.get_secret_value().encode()
        )
    if settings.actuator == "kubernetes":
        return KubernetesActuator()
    return DryRunActuator()


def _audit(
    session: Session, ctx: Context, action: str, row: FindingRow, actor: str, **body: Any
) -> None:
    entry = append(
        session,
        ctx.signer,
        actor=actor,
        action=action,
        subject=f"finding:{row.public_id}",
        body={"finding": row.public_id, "fingerprint": row.fingerprint, **stringify(body)},
    )
    row.audit_seq = entry.seq


def enqueue_approved(
    session: Session, ctx: Context, row: FindingRow, actor: str, kind: str = "apply"
) -> actuations.Actuation | None:
    """Inside the approval's transaction: write the outbox row for an actuatable plan.

    A runbook plan (the change needs a person) gets no outbox row; the audit
    record says so and the finding stays approved.
    """
    if row.plan is None:
        return None
    plan = ActionPlan.model_validate(row.plan)
    if kind == "revert":
        plan = plan.inverse()
    if not plan.actuatable:
        _audit(session, ctx, "actuation.runbook", row, actor, runbook=plan.runbook)
        return None
    outbox = actuations.enqueue(
        session,
        finding_id=row.id,
        fingerprint=row.fingerprint,
        kind="revert" if kind == "revert" else "apply",
        plan=plan.model_dump(mode="json"),
        requested_by=actor,
    )
    _audit(
        session,
        ctx,
        "actuation.planned",
        row,
        actor,
        kind=kind,
        idempotency_key=outbox.idempotency_key,
        plan=plan.model_dump(mode="json"),
    )
    return outbox


@dataclass
class Processed:
    """One outbox row carried through."""

    finding: str
    kind: str
    status: str
    detail: str


def _access(session: Session, names: set[str]) -> dict[str, ClusterAccess]:
    rows = session.query(Cluster).filter(Cluster.name.in_(names)).all() if names else []
    return {
        row.name: ClusterAccess(
            name=row.name,
            api_url=row.k8s_api_url,
            token_file=row.k8s_token_file,
            ca_file=row.k8s_ca_file,
            kubeconfig=row.kubeconfig,
        )
        for row in rows
    }


def still_holds(ctx: Context, row: FindingRow, plan: ActionPlan) -> str | None:
    """None when the finding still stands as approved; else why it went stale.

    Re-reads the latest facts and prices: the finding must still fire, propose
    the same change, and its dollar figure must be within the tolerance of the
    figure the operator approved.
    """
    evaluation = evaluate_now(ctx)
    current = next((f for f in evaluation.findings if f.fingerprint == row.fingerprint), None)
    if current is None:
        return "the condition no longer holds in the latest facts"
    if plan_for(current).model_dump(mode="json") != plan.model_dump(mode="json"):
        return "the latest facts call for a different change than the one approved"
    approved = float(row.decided_usd if row.decided_usd is not None else row.monthly_usd)
    now = current.monthly_usd
    tolerance = ctx.settings.actuation_tolerance
    if approved > 0 and abs(now - approved) > tolerance * approved:
        return (
            f"the figure moved from ${approved:,.2f} to ${now:,.2f}/month, beyond the "
            f"{tolerance:.0%} tolerance"
        )
    return None


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class _Next:
    """A claimed outbox row, re-checked: what to ask of the actuator, or why it went stale."""

    outbox_id: int
    kind: str
    request: ActuationRequest
    why_stale: str | None


def _claim_next(ctx: Context, actuator: str) -> _Next | None:
    """Claim the next pending outbox row, re-check an apply, and audit the request."""
    lease = timedelta(seconds=ctx.settings.actuation_lease_seconds)
    with transaction(ctx.sessions) as session:
        claimed = actuations.claim(session, _worker(), lease)
        if claimed is None:
            return None
        row = session.get(FindingRow, claimed.finding_id)
        assert row is not None  # the foreign key guarantees it
        plan = ActionPlan.model_validate(claimed.plan)
        outbox_id, kind, key = claimed.id, claimed.kind, claimed.idempotency_key
        if kind == "apply":
            row.status = ACTUATING
        row.updated_at = utcnow()
        _audit(session, ctx, "actuation.claimed", row, "actuator", kind=kind, worker=_worker())
        clusters = _access(session, {target.cluster for target in plan.targets})
        public_id = row.public_id
    request = ActuationRequest(public_id, kind, key, plan, clusters)
    why_stale = still_holds(ctx, row, plan) if kind == "apply" else None
    if why_stale is None:
        with transaction(ctx.sessions) as session:
            row = session.get(FindingRow, claimed.finding_id)
            assert row is not None
            _audit(
                session,
                ctx,
                "actuation.requested",
                row,
                "actuator",
                kind=kind,
                actuator=actuator,
                plan=plan.model_dump(mode="json"),
            )
    return _Next(outbox_id, kind, request, why_stale)


async def run_pending(ctx: Context, actuator: Actuator | None = None) -> list[Processed]:
    """Carry out every pending outbox row, one at a time; safe to run on every replica.

    The database work and the re-check (a fleet evaluation) run in a worker
    thread, so the event loop that answers Slack and the API never waits on them.
    """
    actuator = actuator or make_actuator(ctx)
    done: list[Processed] = []
    while (step := await asyncio.to_thread(_claim_next, ctx, actuator.name)) is not None:
        if step.why_stale is not None:
            result = ActuationResult(False, step.why_stale)
            status = STALE
        else:
            try:
                result = await actuator.apply(step.request)
            except Exception as exc:  # an actuator bug must not leave the row running
                log.exception("actuator %s failed on %s", actuator.name, step.request.finding)
                result = ActuationResult(False, f"actuator error: {type(exc).__name__}")
            status = actuations.DONE if result.ok else FAILED
        done.append(
            await asyncio.to_thread(_record, ctx, step.outbox_id, step.kind, status, result)
        )
    return done


def _record(
    ctx: Context, outbox_id: int, kind: str, status: str, result: ActuationResult
) -> Processed:
    with transaction(ctx.sessions) as session:
        outbox = session.get(actuations.Actuation, outbox_id)
        assert outbox is not None
        actuations.finish(session, outbox, status, result.as_json())
        row = session.get(FindingRow, outbox.finding_id)
        assert row is not None
        now = utcnow()
        if kind == "apply":
            row.status = ACTUATED if status == actuations.DONE else status
            if status == actuations.DONE:
                row.actuated_at = now
        elif status == actuations.DONE:
            row.outcome, row.outcome_at = "reverted", now
        row.updated_at = now
        action = {
            actuations.DONE: "actuation.succeeded",
            FAILED: "actuation.failed",
            STALE: "actuation.stale",
        }[status]
        _audit(session, ctx, action, row, "actuator", kind=kind, result=result.as_json())
        processed = Processed(row.public_id, kind, row.status, result.detail)
    return processed


class RevertRefused(ValueError):
    """A revert that cannot be requested; the message says why."""


def request_revert(ctx: Context, finding_id: int, actor: str) -> actuations.Actuation:
    """Queue the inverse of an actuated finding's plan, through the same outbox.

    Only within STEWARD_REVERT_WINDOW_HOURS of the actuation, and once; the
    caller checks that `actor` may decide (the CLI operator, or a Slack approver).
    """
    with transaction(ctx.sessions) as session:
        row = session.get(FindingRow, finding_id, with_for_update=True)
        if row is None:
            raise RevertRefused(f"there is no finding F-{finding_id}")
        if row.status != ACTUATED or row.actuated_at is None:
            raise RevertRefused(f"{row.public_id} is {row.status}: only an actuated change reverts")
        window = timedelta(hours=ctx.settings.revert_window_hours)
        if utcnow() - row.actuated_at > window:
            raise RevertRefused(
                f"{row.public_id} was actuated more than {ctx.settings.revert_window_hours:g} "
                "hours ago; revert it by hand from its plan (`steward findings --all --json`)"
            )
        if any(a.kind == "revert" for a in actuations.for_finding(session, finding_id)):
            raise RevertRefused(f"{row.public_id} has already been reverted or is being reverted")
        _audit(session, ctx, "finding.revert_approved", row, actor)
        outbox = enqueue_approved(session, ctx, row, actor, kind="revert")
        if outbox is None:
            raise RevertRefused(f"{row.public_id} has no plan that can be reverted automatically")
        return outbox


async def actuate_and_report(
    ctx: Context, actuator: Actuator | None = None, client: AsyncWebClient | None = None
) -> list[Processed]:
    """Carry out pending actuations, then update each finding's Slack message and thread."""
    done = await run_pending(ctx, actuator)
    client = client or make_client(ctx.settings)
    if client is None:
        return done
    for processed in done:
        try:
            await _report(ctx, client, processed)
        except Exception as exc:  # Slack trouble never undoes or repeats an actuation
            log.warning("could not report %s to Slack: %s", processed.finding, exc)
    return done


def _read_finding(ctx: Context, finding_id: int) -> FindingRow | None:
    with reading(ctx.sessions) as session:
        return session.get(FindingRow, finding_id)


async def _report(ctx: Context, client: AsyncWebClient, processed: Processed) -> None:
    finding_id = parse_id(processed.finding)
    if finding_id is None:
        return
    row = await asyncio.to_thread(_read_finding, ctx, finding_id)
    if row is None or row.slack_channel is None or row.slack_ts is None:
        return
    await update_message(client, row)
    text = render(
        "slack/actuation.j2",
        finding=processed.finding,
        kind=processed.kind,
        status=processed.status,
        detail=processed.detail,
        approver=row.decided_by,
    )
    await client.chat_postMessage(channel=row.slack_channel, thread_ts=row.slack_ts, text=text)
