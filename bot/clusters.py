"""Cluster registration and key management, shared by the CLI and the admin API."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.context import Context
from store import keys, registry
from store.audit import append
from store.db import transaction, utcnow
from store.models import ApiKey, Cluster


@dataclass(frozen=True)
class ClusterRow:
    """What `cluster list` shows of one cluster."""

    name: str
    provider: str
    region: str
    created_at: datetime
    last_facts_at: datetime | None
    active_keys: list[str]
    key_status: str
    prometheus_url: str | None = None
    prometheus_token_file: str | None = None
    piqc_url: str | None = None
    pull_interval_seconds: int | None = None
    last_pull_at: datetime | None = None
    last_pull_status: str | None = None
    last_pull_error: str | None = None
    pull_failures: int = 0
    next_pull_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""

        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "name": self.name,
            "provider": self.provider,
            "region": self.region,
            "created_at": self.created_at.isoformat(),
            "last_facts_at": when(self.last_facts_at),
            "active_keys": self.active_keys,
            "key_status": self.key_status,
            "prometheus_url": self.prometheus_url,
            "prometheus_token_file": self.prometheus_token_file,
            "piqc_url": self.piqc_url,
            "pull_interval_seconds": self.pull_interval_seconds,
            "last_pull_at": when(self.last_pull_at),
            "last_pull_status": self.last_pull_status,
            "last_pull_error": self.last_pull_error,
            "pull_failures": self.pull_failures,
            "next_pull_at": when(self.next_pull_at),
        }


def _key_status(active: list[ApiKey]) -> str:
    if not active:
        return "no active key"
    if len(active) > 1:
        return "rotating"
    return "active"


def _row(cluster: Cluster, active: list[ApiKey]) -> ClusterRow:
    return ClusterRow(
        name=cluster.name,
        provider=cluster.provider,
        region=cluster.region,
        created_at=cluster.created_at,
        last_facts_at=cluster.last_facts_at,
        active_keys=[key.key_id for key in active],
        key_status=_key_status(active),
        prometheus_url=cluster.prometheus_url,
        prometheus_token_file=cluster.prometheus_token_file,
        piqc_url=cluster.piqc_url,
        pull_interval_seconds=cluster.pull_interval_seconds,
        last_pull_at=cluster.last_pull_at,
        last_pull_status=cluster.last_pull_status,
        last_pull_error=cluster.last_pull_error,
        pull_failures=cluster.pull_failures or 0,
        next_pull_at=cluster.next_pull_at,
    )


@dataclass(frozen=True)
class PullSources:
    """Changes to how Steward reaches a cluster — pull sources, and the Kubernetes API
    the actuator patches through: None leaves a field as it is, "" clears it.

    Credentials are never stored, only the paths of the files that hold them.
    """

    prometheus_url: str | None = None
    prometheus_token_file: str | None = None
    piqc_url: str | None = None
    pull_interval_seconds: int | None = None
    k8s_api_url: str | None = None
    k8s_token_file: str | None = None
    k8s_ca_file: str | None = None
    kubeconfig: str | None = None

    def is_empty(self) -> bool:
        """True when nothing would change."""
        return all(value is None for value in vars(self).values())


def _url(option: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or len(value) > 2048:
        raise registry.RegistryError(
            f"{option} '{value}' is not an http(s) URL; give e.g. http://prometheus.monitoring:9090"
        )
    return value


def _path(value: str) -> str | None:
    value = value.strip()
    return str(Path(value).expanduser().resolve()) if value else None


def _apply_sources(cluster: Cluster, sources: PullSources) -> dict[str, str]:
    changed: dict[str, str] = {}
    if sources.k8s_api_url is not None:
        cluster.k8s_api_url = _url("--k8s-api-url", sources.k8s_api_url)
        changed["k8s_api_url"] = cluster.k8s_api_url or ""
    for field in ("k8s_token_file", "k8s_ca_file", "kubeconfig"):
        value = getattr(sources, field)
        if value is not None:
            setattr(cluster, field, _path(value))
            changed[field] = getattr(cluster, field) or ""
    if sources.prometheus_url is not None:
        cluster.prometheus_url = _url("--prometheus-url", sources.prometheus_url)
        changed["prometheus_url"] = cluster.prometheus_url or ""
    if sources.prometheus_token_file is not None:
        # Only the path is kept: the token is read from it at each pull.
        cluster.prometheus_token_file = _path(sources.prometheus_token_file)
        changed["prometheus_token_file"] = cluster.prometheus_token_file or ""
    if sources.piqc_url is not None:
        cluster.piqc_url = _url("--piqc-url", sources.piqc_url)
        changed["piqc_url"] = cluster.piqc_url or ""
    if sources.pull_interval_seconds is not None:
        if sources.pull_interval_seconds < 0:
            raise registry.RegistryError(
                "--pull-interval must be a number of seconds (0 uses STEWARD_PULL_INTERVAL_SECONDS)"
            )
        cluster.pull_interval_seconds = sources.pull_interval_seconds or None
        changed["pull_interval_seconds"] = str(sources.pull_interval_seconds)
    if changed:
        # New sources are pulled at the next opportunity, with a clean failure count.
        cluster.next_pull_at = None
        cluster.pull_failures = 0
    return changed


def add_cluster(
    ctx: Context,
    name: str,
    provider: str,
    region: str,
    actor: str,
    sources: PullSources | None = None,
) -> str:
    """Register a cluster and return its first API key (shown once)."""
    with transaction(ctx.sessions) as session:
        cluster = registry.add_cluster(session, name, provider, region)
        changed = _apply_sources(cluster, sources) if sources else {}
        issued = keys.issue_key(session, cluster, ctx.pepper)
        append(
            session,
            ctx.signer,
            actor=actor,
            action="cluster.registered",
            subject=f"cluster:{name}",
            body={
                "cluster": name,
                "provider": cluster.provider,
                "region": cluster.region,
                **changed,
            },
        )
        append(
            session,
            ctx.signer,
            actor=actor,
            action="key.issued",
            subject=f"cluster:{name}",
            body={"cluster": name, "key_id": issued.key_id},
        )
    return issued.token


def set_sources(ctx: Context, name: str, sources: PullSources, actor: str) -> ClusterRow:
    """Change a cluster's pull sources and interval; the change is audited."""
    if sources.is_empty():
        raise registry.RegistryError(
            "nothing to change: give --prometheus-url, --prometheus-token-file, --piqc-url, "
            "--pull-interval, --kubeconfig, --k8s-api-url, --k8s-token-file or --k8s-ca-file"
        )
    now = utcnow()
    with transaction(ctx.sessions) as session:
        cluster = registry.get_cluster(session, name, for_update=True)
        changed = _apply_sources(cluster, sources)
        append(
            session,
            ctx.signer,
            actor=actor,
            action="cluster.sources_changed",
            subject=f"cluster:{name}",
            body={"cluster": name, **changed},
        )
        return _row(cluster, keys.active_keys(session, cluster, now))


def list_clusters(ctx: Context) -> list[ClusterRow]:
    """Every cluster with its key status."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        return [
            _row(cluster, keys.active_keys(session, cluster, now))
            for cluster in registry.list_clusters(session)
        ]


def rotate_key(ctx: Context, name: str, grace_hours: float, actor: str) -> tuple[str, datetime]:
    """Issue a new key; the old one keeps working for `grace_hours`. Returns (key, old expiry)."""
    if grace_hours < 0:
        raise registry.RegistryError("--grace must be zero or more hours")
    now = utcnow()
    grace = timedelta(hours=grace_hours)
    with transaction(ctx.sessions) as session:
        cluster = registry.get_cluster(session, name, for_update=True)
        issued, changed = keys.rotate_key(session, cluster, ctx.pepper, now, grace)
        append(
            session,
            ctx.signer,
            actor=actor,
            action="key.rotated",
            subject=f"cluster:{name}",
            body={
                "cluster": name,
                "key_id": issued.key_id,
                "grace_hours": str(grace_hours),
                "old_keys": {
                    key.key_id: key.expires_at.isoformat() if key.expires_at else None
                    for key in changed
                },
            },
        )
    return issued.token, now + grace


def revoke_keys(ctx: Context, name: str, actor: str) -> list[str]:
    """Every key of the cluster stops working at once; returns the revoked key ids."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        cluster = registry.get_cluster(session, name, for_update=True)
        revoked = [key.key_id for key in keys.revoke_keys(session, cluster, now)]
        append(
            session,
            ctx.signer,
            actor=actor,
            action="key.revoked",
            subject=f"cluster:{name}",
            body={"cluster": name, "key_ids": revoked},
        )
    return revoked


class AuthFailureLog:
    """Writes `auth.failed` audit records, at most one per key id per interval.

    A client hammering the API with a bad key must not grow the audit log
    without bound; the record that is written counts the attempts it stands for.
    """

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def record(self, ctx: Context, key_id: str | None, reason: str, remote: str | None) -> None:
        """Note one failed authentication; audit it unless one was audited recently."""
        label = key_id or "none"
        now = time.monotonic()
        with self._lock:
            last = self._last.get(label)
            if last is not None and now - last < self._interval:
                self._suppressed[label] = self._suppressed.get(label, 0) + 1
                return
            self._last[label] = now
            attempts = self._suppressed.pop(label, 0) + 1
            if len(self._last) > 10_000:  # forget the oldest labels; memory stays bounded
                for stale in sorted(self._last, key=self._last.__getitem__)[:5_000]:
                    self._last.pop(stale, None)
        with transaction(ctx.sessions) as session:
            append(
                session,
                ctx.signer,
                actor=f"client:{remote or 'unknown'}",
                action="auth.failed",
                subject=f"key:{label}",
                body={"key_id": label, "reason": reason, "attempts": str(attempts)},
            )


def authenticate(ctx: Context, token: str | None) -> tuple[Cluster, ApiKey] | None:
    """The cluster a bearer token belongs to, or None."""
    if not token:
        return None
    now = utcnow()
    with transaction(ctx.sessions) as session:
        key = keys.authenticate(session, ctx.pepper, token, now)
        if key is None:
            return None
        key.last_used_at = now
        return key.cluster, key
