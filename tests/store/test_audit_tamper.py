"""Tampering with the stored audit log is detected and named, whatever is changed.

Each test plays a database owner who edits rows directly with SQL, after
switching off the append-only triggers (which only stop accidents).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from store.audit import (
    GENESIS_HASH,
    AuditCheckpoint,
    AuditEntry,
    AuditKey,
    AuditRecord,
    Checkpoint,
    VerifyReport,
    append,
    checkpoint,
    compute_entry_hash,
    export_jsonl,
    format_ts,
    read_checkpoints,
    rotate_signing_key,
    rotation_message,
    verify,
)
from store.db import transaction, utcnow
from store.signing import Signer

LOG = AuditRecord.__table__
KEYS = AuditKey.__table__
CHECKPOINTS = AuditCheckpoint.__table__


def unguard(conn: Connection) -> None:
    """Switch off the append-only triggers, as the database owner can."""
    if conn.dialect.name == "postgresql":
        for table in ("audit_log", "audit_keys", "audit_checkpoints"):
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        return
    names = conn.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit%'")
    ).scalars()
    for name in list(names):
        conn.execute(text(f"DROP TRIGGER {name}"))


def tamper(engine: Engine, change: Callable[[Connection], object]) -> None:
    """Apply `change` directly to the tables and commit it."""
    with engine.begin() as conn:
        unguard(conn)
        change(conn)


def build_log(sessions: sessionmaker[Session], signer: Signer, n: int) -> list[AuditEntry]:
    """`n` records signed by `signer`, a checkpoint every 5."""
    with transaction(sessions) as session:
        return [
            append(
                session,
                signer,
                actor="alice",
                action="finding.approved",
                subject=f"finding:F-{i}",
                body={"finding": f"F-{i}", "monthly_usd": "3200.32"},
                checkpoint_every=5,
            )
            for i in range(n)
        ]


def first_bad(sessions: sessionmaker[Session], **kwargs: Any) -> tuple[int, str] | None:
    """(seq, reason) of the first bad record, or None when the log verifies."""
    with transaction(sessions) as session:
        report = verify(session, **kwargs)
    assert report.ok == (report.first_bad is None)
    return None if report.first_bad is None else (report.first_bad.seq, report.first_bad.reason)


def report_of(sessions: sessionmaker[Session], **kwargs: Any) -> VerifyReport:
    with transaction(sessions) as session:
        return verify(session, **kwargs)


def forged_row(
    seq: int, prev_hash: str, signer: Signer, key_id: str | None = None
) -> dict[str, Any]:
    """A well-formed record signed by `signer` (claiming `key_id`)."""
    ts = utcnow()
    body = '{"finding":"F-x","monthly_usd":"0.00"}'
    entry_hash = compute_entry_hash(
        seq, format_ts(ts), "mallory", "finding.dismissed", "finding:F-x", prev_hash, body
    )
    return {
        "seq": seq,
        "ts": ts,
        "actor": "mallory",
        "action": "finding.dismissed",
        "subject": "finding:F-x",
        "body": body,
        "prev_hash": prev_hash,
        "entry_hash": entry_hash,
        "signature": signer.sign(bytes.fromhex(entry_hash)).hex(),
        "key_id": key_id or signer.key_id,
        "cosignature": None,
    }


def register(conn: Connection, signer: Signer) -> None:
    conn.execute(
        insert(KEYS).values(
            key_id=signer.key_id, public_key=signer.public_key_hex, created_at=utcnow()
        )
    )


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def entries(sessions: sessionmaker[Session], signer: Signer) -> list[AuditEntry]:
    """A 12-record log with checkpoints at 5 and 10."""
    log = build_log(sessions, signer, 12)
    assert first_bad(sessions) is None
    return log


def test_edited_body_is_a_hash_mismatch(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    body = '{"finding":"F-2","monthly_usd":"1.00"}'
    tamper(engine, lambda c: c.execute(update(LOG).where(LOG.c.seq == 3).values(body=body)))
    assert first_bad(sessions) == (3, "hash_mismatch")


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "bob"), ("action", "finding.dismissed"), ("subject", "finding:F-99")],
)
def test_edited_actor_action_or_subject_is_a_hash_mismatch(
    engine: Engine,
    sessions: sessionmaker[Session],
    entries: list[AuditEntry],
    column: str,
    value: str,
) -> None:
    tamper(engine, lambda c: c.execute(update(LOG).where(LOG.c.seq == 3).values({column: value})))
    assert first_bad(sessions) == (3, "hash_mismatch")


def test_a_timestamp_moved_by_one_microsecond_is_a_hash_mismatch(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    ts = entries[2].ts + timedelta(microseconds=1)
    tamper(engine, lambda c: c.execute(update(LOG).where(LOG.c.seq == 3).values(ts=ts)))
    assert first_bad(sessions) == (3, "hash_mismatch")


def test_edited_body_with_recomputed_hash_is_a_bad_signature(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    def change(conn: Connection) -> None:
        row = conn.execute(select(LOG).where(LOG.c.seq == 12)).one()
        body = '{"finding":"F-11","monthly_usd":"1.00"}'
        new_hash = compute_entry_hash(
            12, format_ts(row.ts), row.actor, row.action, row.subject, row.prev_hash, body
        )
        conn.execute(update(LOG).where(LOG.c.seq == 12).values(body=body, entry_hash=new_hash))

    tamper(engine, change)
    assert first_bad(sessions) == (12, "bad_signature")


def test_a_deleted_record_is_a_gap(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    tamper(engine, lambda c: c.execute(delete(LOG).where(LOG.c.seq == 3)))
    assert first_bad(sessions) == (3, "gap")


def test_two_swapped_records_break_the_link(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    def change(conn: Connection) -> None:
        three = conn.execute(select(LOG).where(LOG.c.seq == 3)).one()._asdict()
        four = conn.execute(select(LOG).where(LOG.c.seq == 4)).one()._asdict()
        conn.execute(delete(LOG).where(LOG.c.seq.in_([3, 4])))
        conn.execute(insert(LOG).values({**four, "seq": 3}))
        conn.execute(insert(LOG).values({**three, "seq": 4}))

    tamper(engine, change)
    assert first_bad(sessions) == (3, "broken_link")


def test_a_record_appended_with_a_key_outside_the_keyring_is_an_unknown_key(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    row = forged_row(13, entries[-1].entry_hash, Signer.generate())
    tamper(engine, lambda c: c.execute(insert(LOG).values(row)))
    assert first_bad(sessions) == (13, "unknown_key")


def test_a_record_appended_with_a_key_slipped_into_the_keyring_is_not_current(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    forger = Signer.generate()

    def change(conn: Connection) -> None:
        register(conn, forger)
        conn.execute(insert(LOG).values(forged_row(13, entries[-1].entry_hash, forger)))

    tamper(engine, change)
    assert first_bad(sessions) == (13, "key_not_current")


def test_a_record_inserted_in_the_middle_is_detected_where_it_sits(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    forger = Signer.generate()

    def change(conn: Connection) -> None:
        # Two steps so that no intermediate state violates the unique seq.
        conn.execute(update(LOG).where(LOG.c.seq > 6).values(seq=-LOG.c.seq))
        conn.execute(update(LOG).where(LOG.c.seq < 0).values(seq=1 - LOG.c.seq))
        register(conn, forger)
        row = forged_row(7, entries[5].entry_hash, forger)
        conn.execute(update(LOG).where(LOG.c.seq == 8).values(prev_hash=row["entry_hash"]))
        conn.execute(insert(LOG).values(row))

    tamper(engine, change)
    assert first_bad(sessions) == (7, "key_not_current")


def test_a_record_claiming_the_real_key_with_a_forged_signature_is_a_bad_signature(
    engine: Engine, sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    row = forged_row(13, entries[-1].entry_hash, Signer.generate(), key_id=signer.key_id)
    tamper(engine, lambda c: c.execute(insert(LOG).values(row)))
    assert first_bad(sessions) == (13, "bad_signature")


def test_a_forged_signature_is_a_bad_signature(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    forged = "ab" * 64
    tamper(engine, lambda c: c.execute(update(LOG).where(LOG.c.seq == 3).values(signature=forged)))
    assert first_bad(sessions) == (3, "bad_signature")


def test_a_signature_by_another_key_outside_the_keyring_is_an_unknown_key(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    other = Signer.generate()
    signature = other.sign(bytes.fromhex(entries[2].entry_hash)).hex()
    values = {"signature": signature, "key_id": other.key_id}
    tamper(engine, lambda c: c.execute(update(LOG).where(LOG.c.seq == 3).values(values)))
    assert first_bad(sessions) == (3, "unknown_key")


def test_a_signer_the_auditor_does_not_trust_is_reported(
    sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    other = Signer.generate().public_key_hex
    assert first_bad(sessions, trusted_keys={other}) == (1, "untrusted_key")
    assert first_bad(sessions, trusted_keys={signer.public_key_hex}) is None


def test_a_tail_cut_before_a_checkpoint_is_truncation(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    tamper(engine, lambda c: c.execute(delete(LOG).where(LOG.c.seq >= 4)))
    assert first_bad(sessions) == (4, "truncated_before_checkpoint")


def test_a_tail_cut_after_the_latest_checkpoint_shows_only_against_a_kept_checkpoint(
    engine: Engine, sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    with transaction(sessions) as session:
        checkpoint(session, signer)  # size 12, e.g. before a nightly export
        out = io.StringIO()
        export_jsonl(session, out)
    kept = read_checkpoints(out.getvalue().splitlines())
    assert max(cp.size for cp in kept) == 12

    def cut(conn: Connection) -> None:
        conn.execute(delete(LOG).where(LOG.c.seq > 10))
        conn.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.size > 10))

    tamper(engine, cut)
    # The log alone is consistent; its reported size is what an auditor compares.
    report = report_of(sessions)
    assert report.ok and report.head_seq == 10 and report.latest_checkpoint == 10
    assert first_bad(sessions, known_checkpoints=kept) == (11, "truncated_before_checkpoint")


def test_a_tail_cut_after_a_checkpoint_kept_in_the_database_is_truncation(
    engine: Engine, sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    with transaction(sessions) as session:
        checkpoint(session, signer)
    tamper(engine, lambda c: c.execute(delete(LOG).where(LOG.c.seq > 10)))
    assert first_bad(sessions) == (11, "truncated_before_checkpoint")


def test_history_rewritten_with_a_stolen_key_contradicts_an_exported_checkpoint(
    engine: Engine, sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    out = io.StringIO()
    with transaction(sessions) as session:
        export_jsonl(session, out)
    kept = read_checkpoints(out.getvalue().splitlines())

    def cut(conn: Connection) -> None:
        conn.execute(delete(LOG).where(LOG.c.seq > 7))
        conn.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.size > 7))

    tamper(engine, cut)
    build_log(sessions, signer, 5)  # a different seq 8..12, validly signed
    assert first_bad(sessions) is None
    assert first_bad(sessions, known_checkpoints=kept) == (10, "checkpoint_mismatch")


def test_an_edited_checkpoint_is_a_bad_checkpoint_signature(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    head = entries[6].entry_hash
    tamper(
        engine,
        lambda c: c.execute(
            update(CHECKPOINTS).where(CHECKPOINTS.c.size == 5).values(head_hash=head)
        ),
    )
    assert first_bad(sessions) == (5, "bad_checkpoint_signature")


def test_an_external_checkpoint_with_a_bad_signature_is_reported(
    sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    fake = Checkpoint(20, "00" * 32, format_ts(utcnow()), signer.key_id, "ab" * 64)
    assert first_bad(sessions, known_checkpoints=[fake]) == (13, "bad_checkpoint_signature")


def test_a_rotation_without_the_new_keys_signature_is_a_bad_rotation(
    engine: Engine, sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    new = Signer.generate()
    with transaction(sessions) as session:
        rotation = rotate_signing_key(session, signer, new)
    build_log(sessions, new, 2)
    assert first_bad(sessions) is None
    bogus = Signer.generate().sign(rotation_message(rotation.entry_hash)).hex()
    tamper(
        engine,
        lambda c: c.execute(update(LOG).where(LOG.c.seq == rotation.seq).values(cosignature=bogus)),
    )
    assert first_bad(sessions) == (rotation.seq, "bad_rotation")


def test_a_cosignature_on_an_ordinary_record_is_reported(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    tamper(
        engine,
        lambda c: c.execute(update(LOG).where(LOG.c.seq == 4).values(cosignature="ab" * 64)),
    )
    assert first_bad(sessions) == (4, "unexpected_cosignature")


def test_a_replaced_keyring_public_key_is_reported(
    engine: Engine, sessions: sessionmaker[Session], signer: Signer, entries: list[AuditEntry]
) -> None:
    other = Signer.generate().public_key_hex
    tamper(
        engine,
        lambda c: c.execute(
            update(KEYS).where(KEYS.c.key_id == signer.key_id).values(public_key=other)
        ),
    )
    assert first_bad(sessions) == (1, "bad_key")


def test_an_unreadable_timestamp_is_a_malformed_record(
    engine: Engine, sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite stores timestamps as free text")
    tamper(engine, lambda c: c.execute(text("UPDATE audit_log SET ts = 'noon' WHERE seq = 7")))
    assert first_bad(sessions) == (7, "malformed_record")


# --- property: every mutation of every stored column is detected --------------------

# (table, key column, mutable columns). Not listed: audit_keys.created_at and
# retired_at and audit_checkpoints.ts, which are informational and not signed.
_TARGETS: list[tuple[Any, str, tuple[str, ...]]] = [
    (
        LOG,
        "seq",
        (
            "seq",
            "ts",
            "actor",
            "action",
            "subject",
            "body",
            "prev_hash",
            "entry_hash",
            "signature",
            "key_id",
            "cosignature",
        ),
    ),
    (CHECKPOINTS, "size", ("size", "head_hash", "key_id", "signature")),
    (KEYS, "key_id", ("key_id", "public_key")),
]


@st.composite
def _mutated_text(draw: st.DrawFn, old: str | None) -> str:
    if old is None:  # a column that is empty on this row gets a plausible value
        return draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=128))
    op = draw(st.sampled_from(["replace", "insert", "delete"] if old else ["insert"]))
    char = draw(st.characters(min_codepoint=1, max_codepoint=0x2FF, exclude_categories=("Cs",)))
    if op == "insert":
        i = draw(st.integers(0, len(old)))
        return old[:i] + char + old[i:]
    i = draw(st.integers(0, len(old) - 1))
    return old[:i] + (char if op == "replace" else "") + old[i + 1 :]


@pytest.fixture
def rotated_log(engine: Engine, sessions: sessionmaker[Session]) -> Engine:
    """7 records, a key rotation, 4 more; checkpoints every 5; triggers off."""
    old, new = Signer.generate(), Signer.generate()
    build_log(sessions, old, 7)
    with transaction(sessions) as session:
        rotate_signing_key(session, old, new, checkpoint_every=5)
    build_log(sessions, new, 4)
    with transaction(sessions) as session:
        checkpoint(session, new)
    assert first_bad(sessions) is None
    with engine.begin() as conn:
        unguard(conn)
    return engine


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_any_mutation_of_any_stored_column_is_detected(
    rotated_log: Engine, data: st.DataObject
) -> None:
    table, key, columns = data.draw(st.sampled_from(_TARGETS))
    column = data.draw(st.sampled_from(columns))
    with rotated_log.connect() as conn:
        transaction_ = conn.begin()
        keys = conn.execute(select(table.c[key]).order_by(table.c[key])).scalars().all()
        row_key = data.draw(st.sampled_from(keys))
        old = conn.execute(select(table.c[column]).where(table.c[key] == row_key)).scalar_one()
        new: Any
        if column == "ts":
            new = old + timedelta(microseconds=data.draw(st.integers(-(10**9), 10**9)))
        elif column in ("seq", "size"):
            new = data.draw(st.integers(-5, 40))
            assume(new not in keys)
        else:
            new = data.draw(_mutated_text(old))
        assume(new != old)
        try:
            with conn.begin_nested():
                conn.execute(update(table).where(table.c[key] == row_key).values({column: new}))
        except DBAPIError:
            transaction_.rollback()
            assume(False)  # e.g. longer than a fixed-width column allows
        with Session(bind=conn) as session:
            report = verify(session)
        transaction_.rollback()
    note = f"{table.name}.{column} of {row_key}: {old!r} -> {new!r}"
    assert not report.ok, note


def test_the_export_carries_the_texts_that_were_hashed(
    sessions: sessionmaker[Session], entries: list[AuditEntry]
) -> None:
    out = io.StringIO()
    with transaction(sessions) as session:
        export_jsonl(session, out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    first = next(item for item in records if item["type"] == "record")
    assert first["entry_hash"] == compute_entry_hash(
        1,
        first["ts"],
        first["actor"],
        first["action"],
        first["subject"],
        GENESIS_HASH,
        first["body"],
    )
