"""Cluster-scoped API keys: `stw_<id>_<secret>`, stored only as an HMAC of the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ApiKey, Cluster

KEY_PREFIX = "stw"
# 8 bytes of key id for lookup, 24 bytes (192 bits) of secret.
_KEY_ID_BYTES = 8
_SECRET_BYTES = 24
_KEY_PATTERN = re.compile(r"^stw_([0-9a-f]{16})_([a-z2-7]{39})$")
MAX_ACTIVE_KEYS = 2


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued key: the full token is shown once and never stored."""

    key_id: str
    token: str
    expires_at: datetime | None = None


def _secret_hmac(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """Split a presented token into (key id, secret); None when it is not a Steward key."""
    match = _KEY_PATTERN.fullmatch(token.strip())
    if match is None:
        return None
    return match.group(1), match.group(2)


def key_id_of(token: str) -> str | None:
    """The key id of a token, safe to log; None when it is not a Steward key."""
    parsed = parse_token(token)
    return parsed[0] if parsed else None


def is_active(key: ApiKey, now: datetime) -> bool:
    """A key works when it is neither revoked nor past its expiry."""
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now)


def issue_key(session: Session, cluster: Cluster, pepper: bytes) -> IssuedKey:
    """Create a new key for `cluster`; the caller shows `token` once."""
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = base64.b32encode(secrets.token_bytes(_SECRET_BYTES)).decode().lower().rstrip("=")
    session.add(ApiKey(key_id=key_id, cluster=cluster, secret_hmac=_secret_hmac(pepper, secret)))
    session.flush()
    return IssuedKey(key_id=key_id, token=f"{KEY_PREFIX}_{key_id}_{secret}")


def active_keys(session: Session, cluster: Cluster, now: datetime) -> list[ApiKey]:
    """The cluster's working keys, oldest first."""
    keys = session.scalars(
        select(ApiKey).where(ApiKey.cluster_id == cluster.id).order_by(ApiKey.created_at)
    )
    return [key for key in keys if is_active(key, now)]


def rotate_key(
    session: Session, cluster: Cluster, pepper: bytes, now: datetime, grace: timedelta
) -> tuple[IssuedKey, list[ApiKey]]:
    """Issue a new key; the keys active until now expire after `grace`.

    At most two keys are ever active: a second rotation within the grace
    period ends the oldest key at once. Returns the new key and the old keys
    whose expiry changed.
    """
    old = active_keys(session, cluster, now)
    changed: list[ApiKey] = []
    keep = old[-(MAX_ACTIVE_KEYS - 1) :] if MAX_ACTIVE_KEYS > 1 else []
    for key in old:
        ends = now + grace if key in keep else now
        if key.expires_at is None or key.expires_at > ends:
            key.expires_at = ends
            changed.append(key)
    return issue_key(session, cluster, pepper), changed


def revoke_keys(session: Session, cluster: Cluster, now: datetime) -> list[ApiKey]:
    """Revoke every key of the cluster at once; returns the keys that were active."""
    revoked = active_keys(session, cluster, now)
    for key in revoked:
        key.revoked_at = now
    return revoked


def authenticate(session: Session, pepper: bytes, token: str, now: datetime) -> ApiKey | None:
    """The active key matching `token`, or None. Compares in constant time."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    key = session.get(ApiKey, key_id)
    expected = key.secret_hmac if key is not None else _secret_hmac(pepper, "")
    matches = hmac.compare_digest(expected, _secret_hmac(pepper, secret))
    if key is None or not matches or not is_active(key, now):
        return None
    return key
