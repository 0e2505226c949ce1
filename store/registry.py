"""The cluster registry: names, providers, regions."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Cluster

# A DNS-label-like slug: what Kubernetes and Prometheus users already type.
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistryError(ValueError):
    """A registry request that cannot be honoured; the message says what to do."""


class UnknownCluster(RegistryError):
    """No cluster of that name is registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no cluster named '{name}'; list them with `steward cluster list`")
        self.name = name


def validate_name(name: str) -> str:
    """Return `name` when it is a valid cluster slug, else raise RegistryError."""
    if not _SLUG.fullmatch(name):
        raise RegistryError(
            f"cluster name '{name}' is not a valid slug: use 1-63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (e.g. prod-east)"
        )
    return name


def _validate_word(field: str, value: str) -> str:
    if not _WORD.fullmatch(value):
        raise RegistryError(
            f"{field} '{value}' is not valid: use up to 64 letters, digits, '.', '_' or '-'"
        )
    return value


def add_cluster(session: Session, name: str, provider: str, region: str) -> Cluster:
    """Register a cluster; raise RegistryError when the name is invalid or taken."""
    validate_name(name)
    if find_cluster(session, name) is not None:
        raise RegistryError(
            f"cluster '{name}' is already registered; "
            f"`steward cluster rotate-key {name}` issues it a new key"
        )
    cluster = Cluster(
        name=name,
        provider=_validate_word("provider", provider).lower(),
        region=_validate_word("region", region),
    )
    session.add(cluster)
    session.flush()
    return cluster


def find_cluster(session: Session, name: str) -> Cluster | None:
    """The cluster called `name`, or None."""
    return session.scalars(select(Cluster).where(Cluster.name == name)).one_or_none()


def get_cluster(session: Session, name: str, *, for_update: bool = False) -> Cluster:
    """The cluster called `name`; raise UnknownCluster when there is none."""
    query = select(Cluster).where(Cluster.name == name)
    if for_update:
        query = query.with_for_update()
    cluster = session.scalars(query).one_or_none()
    if cluster is None:
        raise UnknownCluster(name)
    return cluster


def list_clusters(session: Session) -> list[Cluster]:
    """Every registered cluster, by name."""
    return list(session.scalars(select(Cluster).order_by(Cluster.name)))
