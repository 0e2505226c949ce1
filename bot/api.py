"""The HTTP API: piqc-compatible ingest, the admin API, health and metrics."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, Field
from slack_sdk.web.async_client import AsyncWebClient

from bot import clusters
from bot.context import Context
from bot.ingest import IngestError, decode_json, parse_payload
from bot.pipeline import ingest_and_evaluate
from bot.request_body import BodyTooLarge, read_capped
from bot.slack import guard as slack_guard
from bot.slack.client import pooled_connections
from bot.wording import finding_json
from store import keys
from store.db import ping, transaction
from store.findings import list_findings
from store.migrate import current_revision, head_revision
from store.registry import RegistryError, UnknownCluster

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON `{"detail": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class NewCluster(BaseModel):
    """Body of `POST /v1/clusters`."""

    name: str = Field(max_length=63)
    provider: str = Field(max_length=64)
    region: str = Field(max_length=64)


class RotateKey(BaseModel):
    """Body of `POST /v1/clusters/{name}/rotate-key`."""

    grace_hours: float | None = Field(None, ge=0, le=24 * 365)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def create_app(
    ctx: Context, *, slack_client: AsyncWebClient | None = None, scheduler: bool = False
) -> FastAPI:
    """Build the FastAPI application around an opened context.

    `slack_client` replaces the Web API client built from the settings (tests pass a fake's).
    `scheduler=True` (what `steward serve` passes) runs the scheduled jobs for the app's
    lifetime; apps built for tests leave it off.
    """

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[None]:
        async with pooled_connections(getattr(served.state, "slack_client", None)):
            if not scheduler:
                yield
                return
            from bot.scheduler import Scheduler

            jobs = Scheduler(ctx)
            jobs.start()
            try:
                yield
            finally:
                await jobs.shutdown()

    app = FastAPI(
        title="Steward",
        summary="Model-aware optimisation for GPU inference fleets",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    metrics = CollectorRegistry()
    ingests = Counter(
        "steward_ingest_requests", "Ingest requests by outcome", ["outcome"], registry=metrics
    )
    auth_failures = clusters.AuthFailureLog(ctx.settings.auth_failure_audit_seconds)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in exc.errors()[:5]
        ]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    def require_admin(request: Request) -> None:
        configured = ctx.settings.admin_token
        if configured is None:
            raise ApiError(403, "the admin API is off; set STEWARD_ADMIN_TOKEN to enable it")
        token = _bearer(request) or ""
        if not hmac.compare_digest(token.encode(), configured.get_secret_value().encode()):
            raise ApiError(401, "admin token required", {"WWW-Authenticate": "Bearer"})

    admin = [Depends(require_admin)]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: the database answers and its schema is current."""
        try:
            ping(ctx.engine)
            current = current_revision(ctx.engine)
        except Exception as exc:  # any database failure means "not ready"
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        if current != head_revision():
            return JSONResponse({"status": f"schema at {current}, run `steward db upgrade`"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of Steward's own counters."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/ingest")
    async def ingest(request: Request) -> list[dict[str, Any]]:
        """piqc-compatible push: facts for the key's own cluster."""
        token = _bearer(request)
        found = await run_in_threadpool(clusters.authenticate, ctx, token)
        if found is None:
            ingests.labels("unauthorised").inc()
            remote = request.client.host if request.client else None
            reason = "missing key" if token is None else "bad, expired or revoked key"
            await run_in_threadpool(
                auth_failures.record, ctx, keys.key_id_of(token or ""), reason, remote
            )
            raise ApiError(
                401, "a valid cluster API key is required", {"WWW-Authenticate": "Bearer"}
            )
        cluster, _key = found
        try:
            raw = await read_capped(request, ctx.settings.ingest_max_bytes)
        except BodyTooLarge as exc:
            raise ApiError(413, str(exc)) from exc
        try:
            parsed = parse_payload(decode_json(raw))
        except IngestError as exc:
            ingests.labels("rejected").inc()
            raise ApiError(exc.status, exc.message) from exc
        if parsed.cluster_id != cluster.name:
            ingests.labels("forbidden").inc()
            raise ApiError(
                403,
                f"this key belongs to cluster '{cluster.name}', not '{parsed.cluster_id}'",
            )
        reply = await run_in_threadpool(ingest_and_evaluate, ctx, cluster.name, parsed, "push")
        ingests.labels("accepted").inc()
        return reply

    @app.get("/v1/findings")
    def get_findings(
        request: Request, cluster: str | None = None, all: bool = False
    ) -> list[dict[str, Any]]:
        """Findings as `steward findings --json` prints them.

        The admin token sees every cluster; a cluster key sees only its own
        cluster's findings (fleet findings name no cluster and are admin-only).
        """
        token = _bearer(request) or ""
        configured = ctx.settings.admin_token
        is_admin = configured is not None and hmac.compare_digest(
            token.encode(), configured.get_secret_value().encode()
        )
        if not is_admin:
            found = clusters.authenticate(ctx, token)
            if found is None:
                raise ApiError(401, "a cluster API key or the admin token is required")
            own = found[0].name
            if cluster is not None and cluster != own:
                raise ApiError(403, f"this key belongs to cluster '{own}', not '{cluster}'")
            cluster = own
        with transaction(ctx.sessions) as session:
            rows = list_findings(session, include_all=all, cluster=cluster)
            return [finding_json(row) for row in rows]

    @app.post("/v1/clusters", status_code=201, dependencies=admin)
    def create_cluster(body: NewCluster) -> dict[str, str]:
        """Register a cluster; the reply holds its API key, shown once."""
        try:
            token = clusters.add_cluster(ctx, body.name, body.provider, body.region, "admin-api")
        except RegistryError as exc:
            status = 409 if "already registered" in str(exc) else 422
            raise ApiError(status, str(exc)) from exc
        return {"cluster": body.name, "api_key": token}

    @app.get("/v1/clusters", dependencies=admin)
    def get_clusters() -> list[dict[str, Any]]:
        """Every cluster with its key status."""
        return [row.as_json() for row in clusters.list_clusters(ctx)]

    @app.post("/v1/clusters/{name}/rotate-key", dependencies=admin)
    def rotate(name: str, body: RotateKey | None = None) -> dict[str, str]:
        """New key for the cluster; the old one works for the grace period."""
        grace = body.grace_hours if body and body.grace_hours is not None else None
        try:
            token, old_expires = clusters.rotate_key(
                ctx, name, ctx.settings.key_grace_hours if grace is None else grace, "admin-api"
            )
        except UnknownCluster as exc:
            raise ApiError(404, str(exc)) from exc
        return {"cluster": name, "api_key": token, "old_key_expires_at": old_expires.isoformat()}

    @app.post("/v1/clusters/{name}/revoke-key", dependencies=admin)
    def revoke(name: str) -> dict[str, Any]:
        """Every key of the cluster stops working now."""
        try:
            revoked = clusters.revoke_keys(ctx, name, "admin-api")
        except UnknownCluster as exc:
            raise ApiError(404, str(exc)) from exc
        return {"cluster": name, "revoked": revoked}

    slack_guard.mount(app, ctx, slack_client)
    return app
