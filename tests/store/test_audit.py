"""The audit log: appending, checkpoints, key rotation, export, concurrency."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from store import audit
from store.audit import (
    GENESIS_HASH,
    AuditBodyError,
    AuditCheckpoint,
    AuditError,
    AuditKey,
    AuditRecord,
    append,
    checkpoint,
    compute_entry_hash,
    export_jsonl,
    read_checkpoints,
    rotate_signing_key,
    verify,
    verify_export,
)
from store.db import transaction
from store.signing import Signer, SigningKeyError, key_id_for, load_signer


def _append(
    sessions: sessionmaker[Session], signer: Signer, n: int, *, every: int = 1000
) -> list[audit.AuditEntry]:
    with transaction(sessions) as session:
        return [
            append(
                session,
                signer,
                actor="alice",
                action="finding.approved",
                subject=f"finding:F-{i}",
                body={"finding": f"F-{i}", "monthly_usd": "3200.32"},
                checkpoint_every=every,
            )
            for i in range(n)
        ]


def _verify(sessions: sessionmaker[Session], **kwargs: object) -> audit.VerifyReport:
    with transaction(sessions) as session:
        return verify(session, **kwargs)  # type: ignore[arg-type]


def test_records_are_numbered_from_one_and_chained_from_the_genesis_hash(
    sessions: sessionmaker[Session],
) -> None:
    signer = Signer.generate()
    entries = _append(sessions, signer, 3)
    assert [entry.seq for entry in entries] == [1, 2, 3]
    with transaction(sessions) as session:
        rows = session.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
    assert rows[0].prev_hash == GENESIS_HASH
    assert [row.prev_hash for row in rows[1:]] == [row.entry_hash for row in rows[:-1]]
    assert {row.key_id for row in rows} == {signer.key_id}
    report = _verify(sessions)
    assert report.ok
    assert (report.records, report.head_seq, report.head_hash) == (3, 3, entries[-1].entry_hash)
    assert report.first_bad is None


def test_an_empty_log_verifies(sessions: sessionmaker[Session]) -> None:
    report = _verify(sessions)
    assert report.ok and report.records == 0 and report.head_hash == GENESIS_HASH


def test_the_first_append_registers_the_signing_key(sessions: sessionmaker[Session]) -> None:
    signer = Signer.generate()
    _append(sessions, signer, 1)
    with transaction(sessions) as session:
        key = session.get(AuditKey, signer.key_id)
    assert key is not None
    assert key.public_key == signer.public_key_hex
    assert key.retired_at is None


def test_body_is_stored_as_canonical_json(sessions: sessionmaker[Session]) -> None:
    signer = Signer.generate()
    with transaction(sessions) as session:
        append(
            session,
            signer,
            actor="a",
            action="key.issued",
            subject="cluster:x",
            body={"z": "1", "a": ["é", None, True, 7]},
        )
        stored = session.scalars(select(AuditRecord.body)).one()
    assert stored == '{"a":["é",null,true,7],"z":"1"}'


@pytest.mark.parametrize(
    "body",
    [{"monthly_usd": 3200.32}, {"nested": [{"x": 1.0}]}, {"id": 2**60}, {1: "x"}, {"x": b"b"}],
)
def test_append_refuses_bodies_without_an_exact_canonical_form(
    sessions: sessionmaker[Session], body: dict[object, object]
) -> None:
    with transaction(sessions) as session, pytest.raises(AuditBodyError):
        append(session, Signer.generate(), actor="a", action="x.y", subject="s", body=body)  # type: ignore[arg-type]


def test_float_error_tells_the_caller_to_pass_a_string(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session, pytest.raises(AuditBodyError, match=r'"3200\.32"'):
        append(session, Signer.generate(), actor="a", action="x.y", subject="s", body={"u": 1.5})


@pytest.mark.parametrize("action", ["issued", "Key.Issued", "key..issued", "key.issued!", ""])
def test_action_must_be_a_dotted_id(sessions: sessionmaker[Session], action: str) -> None:
    with transaction(sessions) as session, pytest.raises(AuditError, match="dotted id"):
        append(session, Signer.generate(), actor="a", action=action, subject="s", body={})


def test_length_prefixes_stop_bytes_moving_between_fields() -> None:
    one = compute_entry_hash(1, "t", "ab", "c.d", "s", GENESIS_HASH, "{}")
    two = compute_entry_hash(1, "t", "a", "bc.d", "s", GENESIS_HASH, "{}")
    assert one != two


def test_a_rolled_back_transaction_takes_its_record_with_it(
    sessions: sessionmaker[Session],
) -> None:
    signer = Signer.generate()
    _append(sessions, signer, 2)
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        append(session, signer, actor="a", action="key.revoked", subject="s", body={})
        raise RuntimeError("the state change failed")
    entries = _append(sessions, signer, 1)
    assert entries[0].seq == 3
    assert _verify(sessions).ok


def test_checkpoints_are_written_every_n_records_in_the_same_transaction(
    sessions: sessionmaker[Session],
) -> None:
    signer = Signer.generate()
    entries = _append(sessions, signer, 12, every=5)
    with transaction(sessions) as session:
        rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)).all()
    assert [(row.size, row.head_hash) for row in rows] == [
        (5, entries[4].entry_hash),
        (10, entries[9].entry_hash),
    ]
    report = _verify(sessions)
    assert report.ok and report.checkpoints == 2 and report.latest_checkpoint == 10


def test_on_demand_checkpoint_covers_the_head_and_is_idempotent(
    sessions: sessionmaker[Session],
) -> None:
    signer = Signer.generate()
    entries = _append(sessions, signer, 3)
    with transaction(sessions) as session:
        first = checkpoint(session, signer)
    with transaction(sessions) as session:
        again = checkpoint(session, signer)
    assert first == again
    assert (first.size, first.head_hash, first.key_id) == (3, entries[-1].entry_hash, signer.key_id)
    assert _verify(sessions).checkpoints == 1


def test_checkpointing_an_empty_log_says_so(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session, pytest.raises(AuditError, match="empty"):
        checkpoint(session, Signer.generate())


def test_rotation_hands_signing_to_the_new_key_and_old_records_still_verify(
    sessions: sessionmaker[Session],
) -> None:
    old, new = Signer.generate(), Signer.generate()
    _append(sessions, old, 3)
    with transaction(sessions) as session:
        rotation = rotate_signing_key(session, old, new, actor="admin")
    _append(sessions, new, 2)
    with transaction(sessions) as session:
        record = session.get(AuditRecord, rotation.seq)
        retired = session.get(AuditKey, old.key_id)
    assert record is not None and retired is not None
    assert record.action == "signing_key.rotated"
    assert record.key_id == old.key_id
    assert json.loads(record.body)["new_key_id"] == new.key_id
    assert record.cosignature is not None
    assert retired.retired_at is not None
    report = _verify(sessions, trusted_keys={old.public_key_hex, new.public_key_hex})
    assert report.ok and report.records == 6


def test_a_retired_key_can_no_longer_append(sessions: sessionmaker[Session]) -> None:
    old, new = Signer.generate(), Signer.generate()
    _append(sessions, old, 1)
    with transaction(sessions) as session:
        rotate_signing_key(session, old, new)
    with pytest.raises(AuditError, match="not the audit log's current key"):
        _append(sessions, old, 1)


def test_a_key_swapped_without_rotation_is_refused(sessions: sessionmaker[Session]) -> None:
    _append(sessions, Signer.generate(), 1)
    with pytest.raises(AuditError, match="STEWARD_SIGNING_KEY_FILE"):
        _append(sessions, Signer.generate(), 1)


def test_rotation_cannot_be_appended_by_hand(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session, pytest.raises(AuditError, match="rotate_signing_key"):
        append(
            session,
            Signer.generate(),
            actor="a",
            action="signing_key.rotated",
            subject="s",
            body={},
        )


def test_export_holds_everything_an_offline_verifier_needs(
    sessions: sessionmaker[Session],
) -> None:
    old, new = Signer.generate(), Signer.generate()
    _append(sessions, old, 4, every=2)
    with transaction(sessions) as session:
        rotate_signing_key(session, old, new)
    _append(sessions, new, 3, every=2)
    out = io.StringIO()
    with transaction(sessions) as session:
        assert export_jsonl(session, out) == 8
    lines = out.getvalue().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "steward.audit.export.v1"
    assert bytes.fromhex(header["domain_tag_hex"]) == b"steward.audit.v1\x00"
    assert header["hash"] == "sha256"
    kinds = [json.loads(line)["type"] for line in lines[1:]]
    assert kinds.count("key") == 2 and kinds.count("record") == 8 and kinds.count("checkpoint") == 4
    report = verify_export(lines, trusted_keys={old.public_key_hex, new.public_key_hex})
    assert report.ok, report.first_bad
    assert report == _verify(sessions, trusted_keys={old.public_key_hex, new.public_key_hex})
    assert len(read_checkpoints(lines)) == 4


def test_an_edited_export_line_is_detected(sessions: sessionmaker[Session]) -> None:
    _append(sessions, Signer.generate(), 3)
    out = io.StringIO()
    with transaction(sessions) as session:
        export_jsonl(session, out)
    lines = out.getvalue().splitlines()
    record = json.loads(lines[-2])
    record["body"] = record["body"].replace("3200.32", "3200.33")
    lines[-2] = json.dumps(record)
    report = verify_export(lines)
    assert not report.ok and report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.reason) == (2, "hash_mismatch")
    assert report.records == 3


def test_an_export_without_its_header_is_refused() -> None:
    report = verify_export(['{"type": "record"}'])
    assert not report.ok and report.first_bad is not None
    assert report.first_bad.reason == "malformed_export"


def test_the_log_is_append_only_for_the_application(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _append(sessions, Signer.generate(), 2)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))


def test_concurrent_appenders_never_fork_or_leave_gaps(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    signer = Signer.generate()
    _append(sessions, signer, 1)  # the keyring row exists before the race starts
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(50):
                with transaction(sessions) as session:
                    append(
                        session,
                        signer,
                        actor=f"worker-{n}",
                        action="finding.opened",
                        subject=f"finding:{n}-{i}",
                        body={"n": n, "i": i},
                        checkpoint_every=100,
                    )
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with transaction(sessions) as session:
        seqs = session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)).all()
        prevs = session.scalar(select(func.count(func.distinct(AuditRecord.prev_hash))))
    assert seqs == list(range(1, 802))
    assert prevs == 801
    report = _verify(sessions)
    assert report.ok and report.records == 801 and report.checkpoints == 8


# --- signing key files ------------------------------------------------------------


def test_key_file_is_created_with_mode_0600_and_reloads_to_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    created = load_signer(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_signer(path)
    assert loaded.key_id == created.key_id
    assert len(loaded.key_id) == 16
    assert loaded.key_id == key_id_for(loaded.public_key)


def test_key_file_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    load_signer(path)
    os.chmod(path, 0o640)
    with pytest.raises(SigningKeyError, match=f"chmod 600 {path}"):
        load_signer(path)


def test_key_file_with_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_text("not a key\n")
    os.chmod(path, 0o600)
    with pytest.raises(SigningKeyError, match="64 hex characters"):
        load_signer(path)
