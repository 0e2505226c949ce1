"""The admin HTTP API mirrors `steward cluster …` and is guarded by STEWARD_ADMIN_TOKEN."""

from __future__ import annotations

import httpx

from bot.context import Context
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import payload, workload

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_register_push_rotate_and_revoke_over_http(live_api: LiveServer) -> None:
    url = live_api.url
    created = httpx.post(
        f"{url}/v1/clusters",
        json={"name": "prod-east", "provider": "aws", "region": "us-east-1"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    body = payload("prod-east", workload("ns/a/deployment/x", k8s__replicas=1))
    assert (
        httpx.post(
            f"{url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )

    listed = httpx.get(f"{url}/v1/clusters", headers=ADMIN).json()
    assert [c["name"] for c in listed] == ["prod-east"]
    assert listed[0]["last_facts_at"] is not None

    rotated = httpx.post(
        f"{url}/v1/clusters/prod-east/rotate-key", json={"grace_hours": 0}, headers=ADMIN
    )
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    assert (
        httpx.post(
            f"{url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {new_key}"}
        ).status_code
        == 200
    )

    revoked = httpx.post(f"{url}/v1/clusters/prod-east/revoke-key", headers=ADMIN)
    assert revoked.json()["revoked"]
    assert (
        httpx.post(
            f"{url}/v1/ingest", json=body, headers={"Authorization": f"Bearer {new_key}"}
        ).status_code
        == 401
    )


def test_admin_errors_are_clear_and_never_500(live_api: LiveServer) -> None:
    url = live_api.url
    new = {"name": "prod-east", "provider": "aws", "region": "us-east-1"}
    assert httpx.post(f"{url}/v1/clusters", json=new).status_code == 401
    assert (
        httpx.post(
            f"{url}/v1/clusters", json=new, headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    assert httpx.post(f"{url}/v1/clusters", json=new, headers=ADMIN).status_code == 201
    duplicate = httpx.post(f"{url}/v1/clusters", json=new, headers=ADMIN)
    assert duplicate.status_code == 409
    assert "rotate-key" in duplicate.json()["detail"]
    bad = httpx.post(f"{url}/v1/clusters", json={**new, "name": "Prod East"}, headers=ADMIN)
    assert bad.status_code == 422
    assert "slug" in bad.json()["detail"]
    missing = httpx.post(f"{url}/v1/clusters", json={"name": "x"}, headers=ADMIN)
    assert missing.status_code == 422
    garbage = httpx.post(f"{url}/v1/clusters", content=b"\xff{", headers=ADMIN)
    assert garbage.status_code == 422
    assert httpx.post(f"{url}/v1/clusters/nope/rotate-key", headers=ADMIN).status_code == 404
    assert httpx.post(f"{url}/v1/clusters/nope/revoke-key", headers=ADMIN).status_code == 404
    negative = httpx.post(
        f"{url}/v1/clusters/prod-east/rotate-key", json={"grace_hours": -1}, headers=ADMIN
    )
    assert negative.status_code == 422


def test_admin_api_is_off_without_a_token(ctx: Context) -> None:
    from bot.api import create_app

    ctx.settings.admin_token = None
    with LiveServer(create_app(ctx)) as server:
        response = httpx.get(f"{server.url}/v1/clusters", headers=ADMIN)
    assert response.status_code == 403
    assert "STEWARD_ADMIN_TOKEN" in response.json()["detail"]


def test_health_readiness_and_metrics(live_api: LiveServer) -> None:
    assert httpx.get(f"{live_api.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{live_api.url}/readyz").status_code == 200
    metrics = httpx.get(f"{live_api.url}/metrics")
    assert metrics.status_code == 200
    assert "steward_ingest_requests" in metrics.text
