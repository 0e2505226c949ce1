"""POST /v1/ingest over real HTTP: piqc's contract, scoped keys, clear errors, atomic writes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot import clusters
from bot.context import Context
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import SCENARIOS, payload, register, workload

GOOD = workload(
    "ns/chat/deployment/mistral-7b",
    model__name="mistralai/Mistral-7B-Instruct-v0.3",
    hardware__gpuType="NVIDIA-H100-80GB-HBM3",
)


def _post(server: LiveServer, body: Any, token: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    if isinstance(body, bytes):
        return httpx.post(f"{server.url}/v1/ingest", content=body, headers=headers, **kwargs)
    return httpx.post(f"{server.url}/v1/ingest", json=body, headers=headers, **kwargs)


def _stored(ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        facts = conn.execute(sa.text("SELECT count(*) FROM workload_facts")).scalar_one()
        history = conn.execute(sa.text("SELECT count(*) FROM fact_history")).scalar_one()
    return int(facts) + int(history)


def test_push_is_stored_and_answered_as_piqc_expects(ctx: Context, live_api: LiveServer) -> None:
    token = register(ctx, "prod-east")
    body = payload("prod-east", GOOD)
    body["workloads"][0]["facts"]["vendor.customKey"] = {"value": [1, 2], "dataConfidence": "low"}
    response = _post(live_api, body, token)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert isinstance(reply, list)
    assert reply[0]["workloadId"] == "ns/chat/deployment/mistral-7b"
    assert isinstance(reply[0]["recommendations"], list)
    with ctx.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT facts FROM workload_facts")).scalar_one()
    facts = raw if isinstance(raw, dict) else json.loads(raw)
    assert facts["vendor.customKey"] == {"value": [1, 2], "dataConfidence": "low"}
    [row] = clusters.list_clusters(ctx)
    assert row.last_facts_at is not None


def test_a_second_push_replaces_the_latest_facts_and_grows_history(
    ctx: Context, live_api: LiveServer
) -> None:
    token = register(ctx, "prod-east")
    for gpu in ("NVIDIA-L4", "NVIDIA-A10G"):
        body = payload("prod-east", workload("ns/a/deployment/x", hardware__gpuType=gpu))
        assert _post(live_api, body, token).status_code == 200
    with ctx.engine.connect() as conn:
        latest = conn.execute(sa.text("SELECT facts FROM workload_facts")).scalar_one()
        history = conn.execute(sa.text("SELECT count(*) FROM fact_history")).scalar_one()
    latest = latest if isinstance(latest, dict) else json.loads(latest)
    assert latest["hardware.gpuType"]["value"] == "NVIDIA-A10G"
    assert history == 2


def test_history_is_bounded(ctx: Context, live_api: LiveServer) -> None:
    ctx.settings.fact_history_limit = 3
    token = register(ctx, "prod-east")
    for replicas in range(6):
        body = payload(
            "prod-east",
            workload("ns/a/deployment/x", k8s__replicas=replicas),
            workload("ns/a/deployment/y", k8s__replicas=replicas),
        )
        assert _post(live_api, body, token).status_code == 200
    with ctx.engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.text("SELECT workload_id, count(*) FROM fact_history GROUP BY workload_id")
            ).all()
        )
    assert counts == {"ns/a/deployment/x": 3, "ns/a/deployment/y": 3}


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic abc", "Bearer", "Bearer not-a-key", "Bearer stw_0123456789abcdef_" + "a" * 39],
)
def test_missing_or_bad_keys_get_401_and_nothing_is_stored(
    ctx: Context, live_api: LiveServer, authorization: str | None
) -> None:
    register(ctx, "prod-east")
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(
        f"{live_api.url}/v1/ingest", json=payload("prod-east", GOOD), headers=headers
    )
    assert response.status_code == 401
    assert _stored(ctx) == 0


def test_revoked_and_expired_keys_get_401(ctx: Context, live_api: LiveServer) -> None:
    old = register(ctx, "prod-east")
    new, _ = clusters.rotate_key(ctx, "prod-east", 0, actor="test")
    assert _post(live_api, payload("prod-east", GOOD), old).status_code == 401
    assert _post(live_api, payload("prod-east", GOOD), new).status_code == 200
    clusters.revoke_keys(ctx, "prod-east", actor="test")
    assert _post(live_api, payload("prod-east", GOOD), new).status_code == 401


def test_a_key_never_reaches_another_cluster(ctx: Context, live_api: LiveServer) -> None:
    east = register(ctx, "prod-east")
    register(ctx, "prod-west")
    response = _post(live_api, payload("prod-west", GOOD), east)
    assert response.status_code == 403
    assert "prod-east" in response.json()["detail"]
    response = _post(live_api, payload("no-such-cluster", GOOD), east)
    assert response.status_code == 403
    assert _stored(ctx) == 0


def test_a_cluster_key_is_not_an_admin_token(ctx: Context, live_api: LiveServer) -> None:
    east = register(ctx, "prod-east")
    headers = {"Authorization": f"Bearer {east}"}
    assert httpx.get(f"{live_api.url}/v1/clusters", headers=headers).status_code == 401
    for path in ("/v1/clusters/prod-east/rotate-key", "/v1/clusters/prod-east/revoke-key"):
        assert httpx.post(f"{live_api.url}{path}", headers=headers).status_code == 401
    response = httpx.post(
        f"{live_api.url}/v1/clusters",
        json={"name": "evil", "provider": "aws", "region": "x"},
        headers=headers,
    )
    assert response.status_code == 401


def test_oversized_bodies_get_413_with_or_without_content_length(
    ctx: Context, live_api: LiveServer
) -> None:
    ctx.settings.ingest_max_bytes = 2_000
    token = register(ctx, "prod-east")
    big = payload(
        "prod-east", *[workload(f"ns/a/deployment/w{i}", k8s__replicas=i) for i in range(60)]
    )
    raw = json.dumps(big).encode()
    assert len(raw) > 2_000
    assert _post(live_api, raw, token).status_code == 413

    def chunks() -> Any:
        for start in range(0, len(raw), 500):
            yield raw[start : start + 500]

    response = httpx.post(
        f"{live_api.url}/v1/ingest",
        content=chunks(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert _stored(ctx) == 0


BAD_BODIES = {
    "not json": b"{not json",
    "invalid utf-8": b'{"schemaVersion": "\xff\xfe"}',
    "a list": b"[]",
    "no workloads": json.dumps({"schemaVersion": "piqc-scan.v0.1", "cluster_id": "prod-east"}),
    "bare fact value": json.dumps(
        payload("prod-east", {"workloadId": "ns/a/deployment/x", "facts": {"k8s.replicas": 3}})
    ),
    "wrong schema": json.dumps({**payload("prod-east", GOOD), "schemaVersion": "other.v1"}),
    "empty workload id": json.dumps(payload("prod-east", {"workloadId": "", "facts": {}})),
    "duplicate workload": json.dumps(payload("prod-east", GOOD, GOOD)),
    "bad confidence": json.dumps(
        payload(
            "prod-east",
            {
                "workloadId": "ns/a/deployment/x",
                "facts": {"k8s.replicas": {"value": 1, "dataConfidence": "certain"}},
            },
        )
    ),
    "second workload broken": json.dumps(
        payload("prod-east", GOOD, {"workloadId": "ns/a/deployment/y", "facts": []})
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_malformed_payloads_get_a_readable_422_and_nothing_is_stored(
    ctx: Context, live_api: LiveServer, name: str
) -> None:
    token = register(ctx, "prod-east")
    body = BAD_BODIES[name]
    raw = body if isinstance(body, bytes) else body.encode()
    response = _post(live_api, raw, token, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
    assert _stored(ctx) == 0


def test_failed_authentication_is_audited_and_rate_limited(
    ctx: Context, live_api: LiveServer
) -> None:
    register(ctx, "prod-east")
    bad = "stw_0123456789abcdef_" + "a" * 39
    for _ in range(5):
        assert _post(live_api, payload("prod-east", GOOD), bad).status_code == 401
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT subject FROM audit_log WHERE action = 'auth.failed'")
        ).all()
    assert [row[0] for row in rows] == ["key:0123456789abcdef"]


def _v01_payload() -> dict[str, Any]:
    case = json.loads(next(SCENARIOS.glob("v01-*.json")).read_text())
    return dict(case["clusters"][0]["ingest"])


def test_the_reply_lists_each_workloads_findings(ctx: Context, live_api: LiveServer) -> None:
    token = register(ctx, "prod-east")
    reply = _post(live_api, _v01_payload(), token).json()
    [item] = reply
    [recommendation] = item["recommendations"]
    assert recommendation["rule"] == "tier_misplacement"
    assert recommendation["monthly_usd"] > 0
    assert recommendation["id"].startswith("F-")
    assert "A10G" in recommendation["summary"]


def test_findings_endpoint_is_scoped_to_the_keys_cluster(
    ctx: Context, live_api: LiveServer
) -> None:
    east = register(ctx, "prod-east")
    west = register(ctx, "prod-west")
    assert _post(live_api, _v01_payload(), east).status_code == 200
    url = f"{live_api.url}/v1/findings"
    own = httpx.get(url, headers={"Authorization": f"Bearer {east}"})
    assert [f["cluster"] for f in own.json()] == ["prod-east"]
    assert httpx.get(url, headers={"Authorization": f"Bearer {west}"}).json() == []
    other = httpx.get(
        url, params={"cluster": "prod-east"}, headers={"Authorization": f"Bearer {west}"}
    )
    assert other.status_code == 403
    assert httpx.get(url).status_code == 401
    admin = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert len(admin.json()) == 1
