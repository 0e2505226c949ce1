"""API keys: format, hashing under a pepper, rotation with grace, revocation."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from bot import clusters
from bot.config import Settings
from bot.context import Context
from store import keys, registry
from store.db import transaction, utcnow


def _cluster(ctx: Context, name: str = "prod-east") -> str:
    return clusters.add_cluster(ctx, name, "aws", "us-east-1", actor="test")


def _auth(ctx: Context, token: str, *, later: timedelta = timedelta(0)) -> str | None:
    with transaction(ctx.sessions) as session:
        key = keys.authenticate(session, ctx.pepper, token, utcnow() + later)
        return key.cluster.name if key else None


def test_key_has_prefix_id_and_at_least_128_bits_of_secret(ctx: Context) -> None:
    token = _cluster(ctx)
    match = re.fullmatch(r"stw_([0-9a-f]{16})_([a-z2-7]+)", token)
    assert match is not None
    assert len(match.group(2)) * 5 >= 128


def test_only_an_hmac_of_the_secret_is_stored(ctx: Context) -> None:
    token = _cluster(ctx)
    secret = token.rsplit("_", 1)[1]
    with ctx.engine.connect() as conn:
        for table in ("api_keys", "audit_log"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert all(secret not in str(value) for value in row)


def test_key_authenticates_its_cluster_and_nothing_else(ctx: Context) -> None:
    east = _cluster(ctx, "prod-east")
    west = _cluster(ctx, "prod-west")
    assert _auth(ctx, east) == "prod-east"
    assert _auth(ctx, west) == "prod-west"
    key_id, secret = keys.parse_token(east) or ("", "")
    flipped = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    assert _auth(ctx, f"stw_{key_id}_{flipped}") is None
    assert _auth(ctx, "stw_0000000000000000_" + secret) is None
    assert _auth(ctx, "not-a-key") is None
    assert _auth(ctx, "") is None


def test_a_different_pepper_invalidates_every_key(ctx: Context) -> None:
    token = _cluster(ctx)
    with transaction(ctx.sessions) as session:
        assert keys.authenticate(session, b"another pepper", token, utcnow()) is None


def test_rotation_keeps_the_old_key_for_the_grace_period_only(ctx: Context) -> None:
    old = _cluster(ctx)
    new, _ = clusters.rotate_key(ctx, "prod-east", 2, actor="test")
    assert _auth(ctx, old) == "prod-east"
    assert _auth(ctx, new) == "prod-east"
    assert _auth(ctx, old, later=timedelta(hours=2, seconds=1)) is None
    assert _auth(ctx, new, later=timedelta(days=365)) == "prod-east"


def test_at_most_two_keys_are_active_during_rotation(ctx: Context) -> None:
    first = _cluster(ctx)
    second, _ = clusters.rotate_key(ctx, "prod-east", 24, actor="test")
    third, _ = clusters.rotate_key(ctx, "prod-east", 24, actor="test")
    assert _auth(ctx, first) is None
    assert _auth(ctx, second) == "prod-east"
    assert _auth(ctx, third) == "prod-east"
    [row] = clusters.list_clusters(ctx)
    assert len(row.active_keys) == 2
    assert row.key_status == "rotating"


def test_revocation_is_immediate_for_every_key(ctx: Context) -> None:
    first = _cluster(ctx)
    second, _ = clusters.rotate_key(ctx, "prod-east", 24, actor="test")
    revoked = clusters.revoke_keys(ctx, "prod-east", actor="test")
    assert len(revoked) == 2
    assert _auth(ctx, first) is None
    assert _auth(ctx, second) is None
    [row] = clusters.list_clusters(ctx)
    assert row.key_status == "no active key"


def test_key_events_are_audit_records(ctx: Context) -> None:
    _cluster(ctx)
    clusters.rotate_key(ctx, "prod-east", 1, actor="alice")
    clusters.revoke_keys(ctx, "prod-east", actor="bob")
    with ctx.engine.connect() as conn:
        actions = [
            (actor, action)
            for actor, action in conn.execute(
                sa.text("SELECT actor, action FROM audit_log ORDER BY seq")
            )
        ]
    assert ("test", "key.issued") in actions
    assert ("alice", "key.rotated") in actions
    assert ("bob", "key.revoked") in actions


def test_cluster_names_must_be_slugs_and_unique(ctx: Context) -> None:
    _cluster(ctx, "prod-east")
    for bad in ("Prod", "-east", "east-", "a_b", "", "x" * 64, "east/1"):
        try:
            _cluster(ctx, bad)
        except registry.RegistryError as exc:
            assert "slug" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
    try:
        _cluster(ctx, "prod-east")
    except registry.RegistryError as exc:
        assert "already registered" in str(exc)
    else:
        raise AssertionError("duplicate accepted")


def test_a_reader_does_not_block_a_writer(ctx: Context) -> None:
    from store.db import reading

    _cluster(ctx, "prod-east")
    with reading(ctx.sessions) as session:
        assert [c.name for c in registry.list_clusters(session)] == ["prod-east"]
        _cluster(ctx, "prod-west")  # a write while the read transaction is open
        # The write went through while the read was open. The reader keeps its
        # snapshot on SQLite (WAL); READ COMMITTED on PostgreSQL sees the new row.
        expected = 1 if ctx.engine.dialect.name == "sqlite" else 2
        assert len(registry.list_clusters(session)) == expected
    assert len(clusters.list_clusters(ctx)) == 2


def test_a_pepper_file_others_can_read_is_refused(settings: Settings) -> None:
    import pytest

    from bot.context import ConfigError, open_context

    settings.key_pepper_file.write_text("pepper\n")
    settings.key_pepper_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        open_context(settings)


def test_a_new_pepper_file_is_private(ctx: Context) -> None:
    assert ctx.settings.key_pepper_file.stat().st_mode & 0o777 == 0o600
    assert len(ctx.pepper) >= 40  # 32 random bytes, base64
