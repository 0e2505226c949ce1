"""Tables of the cluster registry and the fact store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.db import Base, JSONType, UTCDateTime, utcnow


class Cluster(Base):
    """A registered Kubernetes cluster."""

    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_facts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Pull sources (Steward fetches facts itself) and the state of the last pull.
    prometheus_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    prometheus_token_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    piqc_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    pull_interval_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_pull_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_pull_error: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    pull_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where the Kubernetes actuator reaches the cluster: a kubeconfig, or URL + token (+ CA).
    k8s_api_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    k8s_token_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    k8s_ca_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    kubeconfig: Mapped[str | None] = mapped_column(String(1024), nullable=True)

    keys: Mapped[list[ApiKey]] = relationship(
        back_populates="cluster", order_by="ApiKey.created_at"
    )


class ApiKey(Base):
    """A cluster-scoped API key; only an HMAC of its secret is stored."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    secret_hmac: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    cluster: Mapped[Cluster] = relationship(back_populates="keys")


class WorkloadFacts(Base):
    """The latest fact set of one workload in one cluster."""

    __tablename__ = "workload_facts"
    __table_args__ = (UniqueConstraint("cluster_id", "workload_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    workload_id: Mapped[str] = mapped_column(String(512))
    facts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(16))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FactHistory(Base):
    """Earlier fact sets, bounded per workload, for trends."""

    __tablename__ = "fact_history"
    __table_args__ = (Index("ix_fact_history_workload", "cluster_id", "workload_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    workload_id: Mapped[str] = mapped_column(String(512))
    facts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(16))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
