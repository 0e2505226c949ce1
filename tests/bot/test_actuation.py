"""After approval: outbox, exactly-once execution, stale re-checks, actuators, outcomes."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from bot.actuation import RevertRefused, enqueue_approved, request_revert, run_pending
from bot.actuators import ActuationRequest, ActuationResult, DryRunActuator
from bot.actuators.kubernetes import KubernetesActuator
from bot.actuators.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookActuator, sign
from bot.cli import app
from bot.context import Context, open_context
from bot.ingest import parse_payload
from bot.pipeline import ingest_and_evaluate, scan
from store import actuations
from store.db import transaction, utcnow
from store.findings import FindingRow
from store.models import Cluster
from tests.factories import SCENARIOS, register

K8S = "https://k8s.test"
DEPLOYMENT = f"{K8S}/apis/apps/v1/namespaces/chat/deployments/llama-8b"


def _idle_payload(replicas: int = 4, util: float = 3) -> dict[str, Any]:
    case = json.loads(next(SCENARIOS.glob("v08-*.json")).read_text())
    payload = copy.deepcopy(case["clusters"][0]["ingest"])
    facts = payload["workloads"][0]["facts"]
    facts["k8s.replicas"]["value"] = replicas
    facts["obs.gpu.utilAvgPct"]["value"] = util
    return dict(payload)


def _push(ctx: Context, payload: dict[str, Any]) -> None:
    ingest_and_evaluate(ctx, "prod-east", parse_payload(payload), "push")


def _approve(ctx: Context, kind: str = "apply") -> int:
    """What the decision path does on approval: state change and outbox row, one transaction."""
    with transaction(ctx.sessions) as session:
        row = session.scalars(
            sa.select(FindingRow).where(FindingRow.rule == "idle_allocation")
        ).one()
        if kind == "apply":
            row.status, row.decided_by, row.decided_usd = "approved", "U1", row.monthly_usd
        enqueue_approved(session, ctx, row, "U1", kind=kind)
        return row.id


def _finding(ctx: Context, finding_id: int) -> FindingRow:
    with transaction(ctx.sessions) as session:
        row = session.get(FindingRow, finding_id)
        assert row is not None
        return row


def _audit_actions(ctx: Context) -> list[str]:
    with ctx.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT action FROM audit_log ORDER BY seq"))]


class Counting(DryRunActuator):
    """A dry-run actuator that counts how often it was asked to act."""

    def __init__(self) -> None:
        self.calls: list[ActuationRequest] = []
        self.lock = threading.Lock()

    async def apply(self, request: ActuationRequest) -> ActuationResult:
        with self.lock:
            self.calls.append(request)
        await asyncio.sleep(0.05)
        return await super().apply(request)


@pytest.fixture
def approved(ctx: Context) -> int:
    register(ctx, "prod-east")
    _push(ctx, _idle_payload())
    return _approve(ctx)


def test_dry_run_records_every_step_and_changes_nothing(ctx: Context, approved: int) -> None:
    [done] = asyncio.run(run_pending(ctx, DryRunActuator()))
    assert done.status == "actuated"
    row = _finding(ctx, approved)
    assert row.status == "actuated" and row.actuated_at is not None
    actions = _audit_actions(ctx)
    steps = [a for a in actions if a.startswith("actuation.")]
    assert steps == [
        "actuation.planned",
        "actuation.claimed",
        "actuation.requested",
        "actuation.succeeded",
    ]
    with transaction(ctx.sessions) as session:
        [outbox] = actuations.for_finding(session, approved)
        assert outbox.status == "done"
        assert outbox.result is not None
        assert outbox.result["requests"][0]["would_patch"]["changes"][0]["after"] == 1


def test_one_outbox_row_per_finding(ctx: Context, approved: int) -> None:
    with pytest.raises(IntegrityError), transaction(ctx.sessions) as session:
        row = session.get(FindingRow, approved)
        assert row is not None
        enqueue_approved(session, ctx, row, "U2")


def test_concurrent_workers_execute_once(ctx: Context, approved: int) -> None:
    actuator = Counting()
    threads = [
        threading.Thread(target=lambda: asyncio.run(run_pending(ctx, actuator))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(actuator.calls) == 1


def test_a_crash_after_approval_resumes_exactly_once(ctx: Context, approved: int) -> None:
    ctx.close()  # the process that approved is gone before it acted
    restarted = open_context(ctx.settings)
    try:
        actuator = Counting()
        asyncio.run(run_pending(restarted, actuator))
        asyncio.run(run_pending(restarted, actuator))
        assert len(actuator.calls) == 1
        assert _finding(restarted, approved).status == "actuated"
    finally:
        restarted.close()


def test_a_worker_that_died_mid_run_is_taken_over_after_its_lease(
    ctx: Context, approved: int
) -> None:
    with transaction(ctx.sessions) as session:
        assert actuations.claim(session, "dead-worker", timedelta(seconds=-1)) is not None
    actuator = Counting()
    asyncio.run(run_pending(ctx, actuator))
    assert len(actuator.calls) == 1


def test_a_stale_finding_is_not_acted_on(ctx: Context, approved: int) -> None:
    _push(ctx, _idle_payload(util=40))  # no longer idle: the condition is gone
    actuator = Counting()
    [done] = asyncio.run(run_pending(ctx, actuator))
    assert actuator.calls == []
    assert done.status == "stale"
    assert _finding(ctx, approved).status == "stale"
    assert "actuation.stale" in _audit_actions(ctx)


def test_a_moved_figure_beyond_tolerance_is_stale(ctx: Context, approved: int) -> None:
    _push(ctx, _idle_payload(replicas=8))  # now 7 replicas to remove instead of 3
    actuator = Counting()
    [done] = asyncio.run(run_pending(ctx, actuator))
    assert actuator.calls == [] and done.status == "stale"


def test_outcome_is_verified_with_the_realised_saving(ctx: Context, approved: int) -> None:
    asyncio.run(run_pending(ctx, DryRunActuator()))
    _push(ctx, _idle_payload(replicas=1))
    row = _finding(ctx, approved)
    assert row.outcome == "verified"
    assert float(row.realised_usd or 0) == pytest.approx(3 * 0.805 * 730, rel=1e-6)
    assert "outcome.verified" in _audit_actions(ctx)


def test_outcome_is_unverified_when_the_change_never_shows(ctx: Context, approved: int) -> None:
    asyncio.run(run_pending(ctx, DryRunActuator()))
    ctx.settings.outcome_window_hours = 0.0001
    with transaction(ctx.sessions) as session:
        row = session.get(FindingRow, approved)
        assert row is not None
        row.actuated_at = utcnow() - timedelta(hours=1)
    scan(ctx)
    assert _finding(ctx, approved).outcome == "unverified"


# --- webhook -------------------------------------------------------------------------------

HOOK = "https://hooks.example.test/steward"


def _webhook(**kwargs: Any) -> WebhookActuator:
    return WebhookActuator(
        HOOK, b"hook-secret", backoff_seconds=0.001, timeout_seconds=0.5, **kwargs
    )


@respx.mock
def test_webhook_posts_a_signed_plan_with_an_idempotency_key(ctx: Context, approved: int) -> None:
    route = respx.post(HOOK).mock(return_value=httpx.Response(202))
    [done] = asyncio.run(run_pending(ctx, _webhook()))
    assert done.status == "actuated"
    request = route.calls.last.request
    timestamp = request.headers[TIMESTAMP_HEADER]
    assert request.headers[SIGNATURE_HEADER] == sign(b"hook-secret", timestamp, request.content)
    body = json.loads(request.content)
    assert body["finding"] == f"F-{approved}"
    assert request.headers["Idempotency-Key"] == body["idempotency_key"]
    assert body["plan"]["targets"][0]["changes"][0] == {
        "kind": "replicas", "key": None, "before": 4, "after": 1
    }  # fmt: skip


@respx.mock
def test_webhook_retries_server_errors_then_succeeds(ctx: Context, approved: int) -> None:
    route = respx.post(HOOK).mock(
        side_effect=[httpx.Response(503), httpx.Response(500), httpx.Response(200)]
    )
    [done] = asyncio.run(run_pending(ctx, _webhook()))
    assert done.status == "actuated" and route.call_count == 3


@respx.mock
def test_webhook_gives_up_after_timeouts(ctx: Context, approved: int) -> None:
    route = respx.post(HOOK).mock(side_effect=httpx.ReadTimeout("slow"))
    [done] = asyncio.run(run_pending(ctx, _webhook(attempts=3)))
    assert done.status == "failed" and route.call_count == 3
    assert _finding(ctx, approved).status == "failed"


@respx.mock
def test_webhook_does_not_retry_a_refusal(ctx: Context, approved: int) -> None:
    route = respx.post(HOOK).mock(return_value=httpx.Response(400, text="bad plan"))
    [done] = asyncio.run(run_pending(ctx, _webhook()))
    assert done.status == "failed" and route.call_count == 1
    assert "bad plan" in done.detail


# --- kubernetes ----------------------------------------------------------------------------

TOKEN = "k8s-secret-token-DO-NOT-LEAK"


def _deployment(replicas: int = 4, version: str = "100") -> dict[str, Any]:
    return {
        "metadata": {"name": "llama-8b", "namespace": "chat", "resourceVersion": version},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                }
            },
        },
    }


@pytest.fixture
def k8s_cluster(ctx: Context, approved: int, tmp_path: Path) -> int:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with transaction(ctx.sessions) as session:
        cluster = session.scalars(sa.select(Cluster)).one()
        cluster.k8s_api_url, cluster.k8s_token_file = K8S, str(token)
    return approved


def _kube(**kwargs: Any) -> KubernetesActuator:
    return KubernetesActuator(backoff_seconds=0.001, timeout_seconds=0.5, **kwargs)


@respx.mock
def test_kubernetes_patches_with_a_precondition_and_the_finding_annotation(
    ctx: Context, k8s_cluster: int, caplog: pytest.LogCaptureFixture
) -> None:
    respx.get(DEPLOYMENT).mock(return_value=httpx.Response(200, json=_deployment()))
    patch = respx.patch(DEPLOYMENT).mock(return_value=httpx.Response(200, json=_deployment(1)))
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "actuated", done.detail
    request = patch.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json-patch+json"
    ops = json.loads(request.content)
    assert {"op": "replace", "path": "/metadata/resourceVersion", "value": "100"} in ops
    assert {
        "op": "add",
        "path": "/metadata/annotations/steward.io~1finding-id",
        "value": f"F-{k8s_cluster}",
    } in ops
    assert {"op": "replace", "path": "/spec/replicas", "value": 1} in ops
    with ctx.engine.connect() as conn:
        bodies = " ".join(r[0] for r in conn.execute(sa.text("SELECT body FROM audit_log")))
        results = " ".join(
            str(r[0]) for r in conn.execute(sa.text("SELECT result FROM actuations"))
        )
    assert TOKEN not in bodies and TOKEN not in results and TOKEN not in caplog.text


@respx.mock
def test_kubernetes_conflict_is_reread_and_reported(ctx: Context, k8s_cluster: int) -> None:
    respx.get(DEPLOYMENT).mock(
        side_effect=[
            httpx.Response(200, json=_deployment()),
            httpx.Response(200, json=_deployment(version="101")),
        ]
    )
    respx.patch(DEPLOYMENT).mock(return_value=httpx.Response(409, json={"reason": "Conflict"}))
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "failed"
    assert "conflict" in done.detail and "101" in done.detail


@respx.mock
def test_kubernetes_forbidden_names_the_missing_verb(ctx: Context, k8s_cluster: int) -> None:
    respx.get(DEPLOYMENT).mock(return_value=httpx.Response(200, json=_deployment()))
    respx.patch(DEPLOYMENT).mock(return_value=httpx.Response(403))
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "failed"
    assert "`patch`" in done.detail and "deployments.apps" in done.detail


@respx.mock
def test_kubernetes_missing_deployment_is_reported(ctx: Context, k8s_cluster: int) -> None:
    respx.get(DEPLOYMENT).mock(return_value=httpx.Response(404))
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "failed" and "not found" in done.detail


@respx.mock
def test_kubernetes_retries_server_errors(ctx: Context, k8s_cluster: int) -> None:
    respx.get(DEPLOYMENT).mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json=_deployment())]
    )
    patch = respx.patch(DEPLOYMENT).mock(
        side_effect=[httpx.Response(500), httpx.Response(200, json={})]
    )
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "actuated" and patch.call_count == 2


@respx.mock
def test_kubernetes_slow_server_times_out_and_fails(ctx: Context, k8s_cluster: int) -> None:
    respx.get(DEPLOYMENT).mock(side_effect=httpx.ReadTimeout("slow"))
    [done] = asyncio.run(run_pending(ctx, _kube(attempts=2)))
    assert done.status == "failed" and "did not answer" in done.detail


@respx.mock
def test_kubernetes_refuses_when_the_deployment_changed_since_the_finding(
    ctx: Context, k8s_cluster: int
) -> None:
    respx.get(DEPLOYMENT).mock(return_value=httpx.Response(200, json=_deployment(replicas=6)))
    patch = respx.patch(DEPLOYMENT)
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "failed" and patch.call_count == 0
    assert "expected 4" in done.detail


@respx.mock
def test_revert_applies_the_inverse_plan(ctx: Context, k8s_cluster: int) -> None:
    respx.get(DEPLOYMENT).mock(
        side_effect=[
            httpx.Response(200, json=_deployment()),
            httpx.Response(200, json=_deployment(1, "200")),
        ]
    )
    patch = respx.patch(DEPLOYMENT).mock(return_value=httpx.Response(200, json={}))
    asyncio.run(run_pending(ctx, _kube()))
    _approve(ctx, kind="revert")
    [reverted] = asyncio.run(run_pending(ctx, _kube()))
    assert reverted.kind == "revert" and reverted.status == "actuated"
    ops = json.loads(patch.calls.last.request.content)
    assert {"op": "replace", "path": "/spec/replicas", "value": 4} in ops
    assert _finding(ctx, k8s_cluster).outcome == "reverted"


def test_missing_credentials_fail_with_the_command_to_fix_them(ctx: Context, approved: int) -> None:
    [done] = asyncio.run(run_pending(ctx, _kube()))
    assert done.status == "failed" and "steward cluster set" in done.detail


# --- revert and the commands ---------------------------------------------------------------


def test_revert_is_refused_before_actuation_after_the_window_and_twice(
    ctx: Context, approved: int
) -> None:
    with pytest.raises(RevertRefused, match="only an actuated change"):
        request_revert(ctx, approved, "U1")
    asyncio.run(run_pending(ctx, DryRunActuator()))
    ctx.settings.revert_window_hours = 0
    with pytest.raises(RevertRefused, match="more than 0 hours ago"):
        request_revert(ctx, approved, "U1")
    ctx.settings.revert_window_hours = 24
    request_revert(ctx, approved, "U1")
    with pytest.raises(RevertRefused, match="already"):
        request_revert(ctx, approved, "U1")
    [reverted] = asyncio.run(run_pending(ctx, DryRunActuator()))
    assert reverted.kind == "revert"
    with transaction(ctx.sessions) as session:
        [_, outbox] = actuations.for_finding(session, approved)
        assert outbox.plan["targets"][0]["changes"][0] == {
            "kind": "replicas", "key": None, "before": 1, "after": 4
        }  # fmt: skip
    assert "finding.revert_approved" in _audit_actions(ctx)


def test_the_actuate_and_revert_commands(ctx: Context, approved: int) -> None:
    env = {
        "STEWARD_DATABASE_URL": ctx.settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(ctx.settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(ctx.settings.key_pepper_file),
    }
    runner = CliRunner()
    first = runner.invoke(app, ["actuate"], env=env)
    assert first.exit_code == 0, first.output
    assert f"F-{approved} (apply): actuated — dry run" in first.stdout
    assert "Nothing to carry out" in runner.invoke(app, ["actuate"], env=env).stdout
    reverted = runner.invoke(app, ["revert", f"F-{approved}", "--as", "alice"], env=env)
    assert reverted.exit_code == 0, reverted.output
    assert f"F-{approved} (revert): actuated" in reverted.stdout
    again = runner.invoke(app, ["revert", f"F-{approved}", "--as", "alice"], env=env)
    assert again.exit_code == 1 and "already" in again.stderr


def test_every_replica_works_the_outbox_on_a_schedule(ctx: Context, approved: int) -> None:
    from bot.scheduler import Scheduler

    asyncio.run(Scheduler(ctx)._actuations())
    assert _finding(ctx, approved).status == "actuated"


def test_findings_json_shows_the_plan_as_a_readable_diff(ctx: Context, approved: int) -> None:
    env = {
        "STEWARD_DATABASE_URL": ctx.settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(ctx.settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(ctx.settings.key_pepper_file),
    }
    listed = CliRunner().invoke(app, ["findings", "--all", "--json"], env=env)
    [idle] = [f for f in json.loads(listed.stdout) if f["rule"] == "idle_allocation"]
    assert idle["plan"]["mode"] == "patch"
    assert idle["plan_diff"] == ["prod-east: deployment chat/llama-8b replicas 4 → 1"]
