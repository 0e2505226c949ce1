"""The signed, hash-chained, append-only audit log.

Every record is linked to the one before it by hash and signed with Ed25519;
signed checkpoints pin the log's size and head so that truncation is visible.

Record hash (hex SHA-256)::

    entry_hash = SHA-256(DOMAIN_TAG || lp(seq) || lp(ts) || lp(actor) || lp(action)
                         || lp(subject) || lp(prev_hash) || lp(body))

where ``lp(x)`` is the 8-byte big-endian length of the UTF-8 bytes of ``x``
followed by those bytes (the length prefix stops bytes moving between
neighbouring fields), ``seq`` is written in decimal, ``ts`` as ISO 8601 with
microseconds and ``+00:00``, ``prev_hash`` in lowercase hex (64 zeros for the
first record) and ``body`` is the RFC 8785 canonical JSON text. The signature
is over the 32 raw bytes of the entry hash. A checkpoint signs
``CHECKPOINT_TAG || lp(size) || lp(head_hash)``.

Bodies are canonical JSON, so the same facts always hash the same. ``append``
refuses floats (and integers beyond ±2^53): a float has no single exact JSON
spelling across languages, so callers pass amounts and large ids as strings,
e.g. ``{"monthly_usd": "3200.32"}``.

Signing keys change only through ``rotate_signing_key``: the rotation record is
signed by the old key and co-signed by the new one, and from then on only the
new key may sign. Records signed by a retired key before its rotation still
verify, from the public keys kept in the ``audit_keys`` keyring.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO, cast

import rfc8785
from nacl.signing import VerifyKey
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, UTCDateTime, utcnow
from store.signing import Signer, key_id_for, signature_valid, verify_key

DOMAIN_TAG: Final = b"steward.audit.v1\x00"
CHECKPOINT_TAG: Final = b"steward.audit.checkpoint.v1\x00"
ROTATION_TAG: Final = b"steward.audit.rotation.v1\x00"
GENESIS_HASH: Final = "0" * 64
EXPORT_FORMAT: Final = "steward.audit.export.v1"
DEFAULT_CHECKPOINT_EVERY: Final = 1000

# Action ids written by this module; callers use their own dotted ids
# (key.issued, key.rotated, key.revoked, auth.failed, finding.opened, ...).
SIGNING_KEY_ROTATED: Final = "signing_key.rotated"

# One constant advisory lock serialises appenders on PostgreSQL ("STEWARDA").
_PG_HEAD_LOCK: Final = 0x5354455741524441
_ACTION_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_MAX_SAFE_INT: Final = 2**53 - 1
_PAGE: Final = 5000

_SeqType = BigInteger().with_variant(Integer, "sqlite")


class AuditRecord(Base):
    """One record of the audit log; rows are never updated or deleted."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(_SeqType, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(512))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(16))
    # Only on signing_key.rotated: the new key's signature, proving possession.
    cosignature: Mapped[str | None] = mapped_column(String(128), nullable=True)


class AuditKey(Base):
    """A public key that has signed audit records, kept after retirement."""

    __tablename__ = "audit_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditCheckpoint(Base):
    """A signed statement that the log had `size` records ending in `head_hash`."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(_SeqType, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))


_log = cast(Table, AuditRecord.__table__)
_keys = cast(Table, AuditKey.__table__)
_checkpoints = cast(Table, AuditCheckpoint.__table__)


class AuditError(RuntimeError):
    """The audit log cannot be written as asked; the message says what to do."""


class AuditBodyError(AuditError, ValueError):
    """A record body that has no exact canonical JSON form."""


@dataclass(frozen=True)
class AuditEntry:
    """What `append` wrote."""

    seq: int
    entry_hash: str
    ts: datetime
    key_id: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed (size, head hash) pair."""

    size: int
    head_hash: str
    ts: str
    key_id: str
    signature: str


@dataclass(frozen=True)
class BadRecord:
    """The first record that failed verification, and why."""

    seq: int
    reason: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying the whole log.

    `head_seq` is the size of the log as found; an auditor compares it with the
    size of the last checkpoint they exported, because records removed after
    the latest checkpoint leave no trace in the log itself.
    """

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    checkpoints: int
    latest_checkpoint: int | None
    first_bad: BadRecord | None

    def as_json(self) -> dict[str, Any]:
        """The report as printed by `steward audit verify --json`."""
        bad = self.first_bad
        return {
            "ok": self.ok,
            "records": self.records,
            "head": self.head_hash,
            "head_seq": self.head_seq,
            "first_bad": None
            if bad is None
            else {"seq": bad.seq, "reason": bad.reason, "detail": bad.detail},
            "checkpoints": self.checkpoints,
            "latest_checkpoint": self.latest_checkpoint,
        }


# --- canonical forms ---------------------------------------------------------


def format_ts(ts: datetime) -> str:
    """The exact text of a timestamp that enters the hash."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def compute_entry_hash(
    seq: int, ts: str, actor: str, action: str, subject: str, prev_hash: str, body: str
) -> str:
    """The hex entry hash of a record (see the module docstring for the layout)."""
    parts = (str(seq), ts, actor, action, subject, prev_hash, body)
    return hashlib.sha256(DOMAIN_TAG + b"".join(_lp(part.encode()) for part in parts)).hexdigest()


def checkpoint_message(size: int, head_hash: str) -> bytes:
    """The bytes a checkpoint signature covers."""
    return CHECKPOINT_TAG + _lp(str(size).encode()) + _lp(head_hash.encode())


def rotation_message(entry_hash: str) -> bytes:
    """The bytes the new key co-signs on a key rotation record."""
    return ROTATION_TAG + bytes.fromhex(entry_hash)


def _check_json_value(value: object, path: str) -> None:
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise AuditBodyError(
                f"body field {path} is an integer beyond ±2^53 ({value}); pass it as a string"
            )
        return
    if isinstance(value, float):
        raise AuditBodyError(
            f"body field {path} is a float ({value!r}); pass numbers with fractions as "
            f'strings, e.g. "3200.32", so the signed JSON is exact'
        )
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditBodyError(f"body field {path} has a non-string key {key!r}")
            _check_json_value(item, f"{path}.{key}")
        return
    raise AuditBodyError(
        f"body field {path} is a {type(value).__name__}; use str, int, bool, None, list or dict"
    )


def canonical_body(body: Mapping[str, Any]) -> str:
    """The RFC 8785 canonical JSON text of a record body; floats are refused."""
    _check_json_value(body, "body")
    try:
        return rfc8785.dumps(body).decode()
    except rfc8785.CanonicalizationError as exc:
        raise AuditBodyError(f"body has no canonical JSON form: {exc}") from exc


# --- writing -------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    seq: int
    entry_hash: str
    key_id: str
    action: str


def _lock_and_read_head(session: Session) -> _Head | None:
    """Take the single-writer lock on the chain head, then read the head.

    On SQLite the transaction began with BEGIN IMMEDIATE (store.db), so it
    already holds the database's only write lock. Re-reading the head under
    the lock is what makes the next seq and prev_hash correct; the unique
    constraints on seq and prev_hash are the backstop.

    The head is read by a statement issued after the lock is granted: under
    READ COMMITTED that statement takes a fresh snapshot and so sees the
    previous holder's commit. (Folding the lock into the same statement would
    read a snapshot taken before the wait.) Under REPEATABLE READ a transaction
    that read before appending may see a stale head; the unique constraints
    then make its append fail instead of forking the chain.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_HEAD_LOCK})
    row = session.execute(
        select(_log.c.seq, _log.c.entry_hash, _log.c.key_id, _log.c.action)
        .order_by(_log.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return _Head(row.seq, row.entry_hash, row.key_id, row.action)


def _key_after(session: Session, head: _Head) -> str:
    """The key that must sign the record after `head`."""
    if head.action != SIGNING_KEY_ROTATED:
        return head.key_id
    body = session.execute(select(_log.c.body).where(_log.c.seq == head.seq)).scalar_one()
    return str(json.loads(body)["new_key_id"])


def _require_current(session: Session, signer: Signer, head: _Head | None) -> None:
    """Refuse a signer that is not the log's current key; register the first key."""
    if head is not None:
        current = _key_after(session, head)
        if signer.key_id != current:
            raise AuditError(
                f"the audit signing key in use (id {signer.key_id}) is not the audit log's "
                f"current key (id {current}); point STEWARD_SIGNING_KEY_FILE at the current "
                "key file (after `steward audit rotate-signing-key`, restart every replica)"
            )
        return
    row = session.execute(
        select(_keys.c.public_key, _keys.c.retired_at).where(_keys.c.key_id == signer.key_id)
    ).first()
    if row is None:
        session.execute(
            insert(_keys).values(
                key_id=signer.key_id,
                public_key=signer.public_key_hex,
                created_at=utcnow(),
                retired_at=None,
            )
        )
    elif row.retired_at is not None:
        raise AuditError(
            f"audit signing key {signer.key_id} was retired; point STEWARD_SIGNING_KEY_FILE "
            "at the current key file"
        )


def _check_fields(actor: str, action: str, subject: str) -> None:
    if not actor:
        raise AuditError("an audit record needs an actor (who did it)")
    if not _ACTION_PATTERN.fullmatch(action) or len(action) > 64:
        raise AuditError(f"action {action!r} is not a dotted id such as 'key.issued'")
    if len(actor) > 256 or len(subject) > 512:
        raise AuditError("actor is limited to 256 characters and subject to 512")


def _write(
    session: Session,
    signer: Signer,
    head: _Head | None,
    *,
    actor: str,
    action: str,
    subject: str,
    body: str,
    checkpoint_every: int,
    cosigner: Signer | None = None,
) -> AuditEntry:
    seq = 1 if head is None else head.seq + 1
    prev_hash = GENESIS_HASH if head is None else head.entry_hash
    ts = utcnow()
    entry_hash = compute_entry_hash(seq, format_ts(ts), actor, action, subject, prev_hash, body)
    raw_hash = bytes.fromhex(entry_hash)
    # Values go as parameters of one fixed statement, so SQLAlchemy compiles it once.
    session.execute(
        insert(_log),
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "subject": subject,
            "body": body,
            "prev_hash": prev_hash,
            "entry_hash": entry_hash,
            "signature": signer.sign(raw_hash).hex(),
            "key_id": signer.key_id,
            "cosignature": None
            if cosigner is None
            else cosigner.sign(rotation_message(entry_hash)).hex(),
        },
    )
    if checkpoint_every > 0 and seq % checkpoint_every == 0:
        _write_checkpoint(session, cosigner or signer, seq, entry_hash, ts)
    return AuditEntry(seq=seq, entry_hash=entry_hash, ts=ts, key_id=signer.key_id)


def _write_checkpoint(
    session: Session, signer: Signer, size: int, head_hash: str, ts: datetime
) -> Checkpoint:
    signature = signer.sign(checkpoint_message(size, head_hash)).hex()
    session.execute(
        insert(_checkpoints).values(
            size=size, head_hash=head_hash, ts=ts, key_id=signer.key_id, signature=signature
        )
    )
    return Checkpoint(size, head_hash, format_ts(ts), signer.key_id, signature)


def append(
    session: Session,
    signer: Signer,
    *,
    actor: str,
    action: str,
    subject: str,
    body: Mapping[str, Any],
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
) -> AuditEntry:
    """Append one signed record inside the caller's transaction.

    The record commits or rolls back with the caller's state change. Appenders
    are serialised on the chain head until that transaction ends, so keep
    transactions that append short. Every `checkpoint_every` records a signed
    checkpoint is written in the same transaction (0 turns that off).
    """
    if action == SIGNING_KEY_ROTATED:
        raise AuditError("signing key rotations are recorded by rotate_signing_key()")
    _check_fields(actor, action, subject)
    body_text = canonical_body(body)
    head = _lock_and_read_head(session)
    _require_current(session, signer, head)
    return _write(
        session,
        signer,
        head,
        actor=actor,
        action=action,
        subject=subject,
        body=body_text,
        checkpoint_every=checkpoint_every,
    )


def rotate_signing_key(
    session: Session,
    old_signer: Signer,
    new_signer: Signer,
    *,
    actor: str = "steward",
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
) -> AuditEntry:
    """Hand signing over to `new_signer`, recorded as a `signing_key.rotated` record.

    The record is signed by the old key and co-signed by the new one, so it
    shows both that the current holder handed over and that the new key exists.
    """
    if old_signer.key_id == new_signer.key_id:
        raise AuditError("the new signing key is the same as the current one")
    head = _lock_and_read_head(session)
    _require_current(session, old_signer, head)
    known = session.execute(
        select(_keys.c.key_id).where(_keys.c.key_id == new_signer.key_id)
    ).first()
    if known is not None:
        raise AuditError(
            f"key {new_signer.key_id} has signed this log before; generate a new key instead"
        )
    now = utcnow()
    session.execute(
        insert(_keys).values(
            key_id=new_signer.key_id,
            public_key=new_signer.public_key_hex,
            created_at=now,
            retired_at=None,
        )
    )
    session.execute(update(_keys).where(_keys.c.key_id == old_signer.key_id).values(retired_at=now))
    body = canonical_body(
        {
            "old_key_id": old_signer.key_id,
            "new_key_id": new_signer.key_id,
            "new_public_key": new_signer.public_key_hex,
        }
    )
    return _write(
        session,
        old_signer,
        head,
        actor=actor,
        action=SIGNING_KEY_ROTATED,
        subject=f"signing_key:{new_signer.key_id}",
        body=body,
        checkpoint_every=checkpoint_every,
        cosigner=new_signer,
    )


def checkpoint(session: Session, signer: Signer) -> Checkpoint:
    """Sign a checkpoint of the current head now (idempotent at a given size)."""
    head = _lock_and_read_head(session)
    if head is None:
        raise AuditError("the audit log is empty; there is nothing to checkpoint yet")
    _require_current(session, signer, head)
    existing = session.execute(select(_checkpoints).where(_checkpoints.c.size == head.seq)).first()
    if existing is not None:
        return _checkpoint_of(existing)
    return _write_checkpoint(session, signer, head.seq, head.entry_hash, utcnow())


def _checkpoint_of(row: Any) -> Checkpoint:
    return Checkpoint(row.size, row.head_hash, format_ts(row.ts), row.key_id, row.signature)


# --- verifying -------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    body: str
    prev_hash: str
    entry_hash: str
    signature: str
    key_id: str
    cosignature: str | None


class _Bad(Exception):
    def __init__(self, seq: int, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.bad = BadRecord(seq, reason, detail)


class _ChainVerifier:
    """Checks records fed in seq order; shared by the database and export verifiers."""

    def __init__(
        self,
        keys: Mapping[str, str],
        checkpoints: Iterable[Checkpoint],
        trusted_keys: Collection[str] | None,
    ) -> None:
        self._public: dict[str, str] = dict(keys)
        # One VerifyKey per key id, built once: constructing it per record
        # would cost as much as the signature check itself.
        self._verifiers: dict[str, VerifyKey | None] = {}
        for key_id, public in keys.items():
            try:
                raw = bytes.fromhex(public)
                # Canonical hex only: fromhex() would also accept spaces and upper case.
                ok = raw.hex() == public and key_id_for(raw) == key_id
                self._verifiers[key_id] = verify_key(public) if ok else None
            except ValueError:
                self._verifiers[key_id] = None
        self._trusted = None if trusted_keys is None else {k.lower() for k in trusted_keys}
        self._checkpoints: dict[int, list[Checkpoint]] = {}
        for cp in checkpoints:
            self._checkpoints.setdefault(cp.size, []).append(cp)
        self.checkpoint_count = len(self._checkpoints)
        self.latest_checkpoint = max(self._checkpoints, default=None)
        self.expected = 1
        self.prev_hash = GENESIS_HASH
        self.current_key: str | None = None
        self.first_bad: BadRecord | None = None

    def _verifier(self, seq: int, key_id: str, what: str) -> VerifyKey:
        if key_id not in self._verifiers:
            raise _Bad(seq, "unknown_key", f"{what} key {key_id} is not in the keyring")
        verifier = self._verifiers[key_id]
        if verifier is None:
            raise _Bad(seq, "bad_key", f"keyring entry {key_id} is not a valid public key")
        if self._trusted is not None and self._public[key_id].lower() not in self._trusted:
            raise _Bad(seq, "untrusted_key", f"{what} key {key_id} is not a trusted key")
        return verifier

    def _check_signature(self, verifier: VerifyKey, message: bytes, sig_hex: str) -> bool:
        try:
            signature = bytes.fromhex(sig_hex)
        except ValueError:
            return False
        # Only the canonical spelling counts: fromhex() also accepts upper case
        # and spaces, and a stored value must not change unnoticed.
        return signature.hex() == sig_hex and signature_valid(verifier, message, signature)

    def _check_checkpoint(self, cp: Checkpoint, at: int) -> None:
        verifier = self._verifier(at, cp.key_id, "checkpoint")
        if not self._check_signature(
            verifier, checkpoint_message(cp.size, cp.head_hash), cp.signature
        ):
            raise _Bad(at, "bad_checkpoint_signature", f"checkpoint at size {cp.size}")

    def _check(self, rec: _Record) -> None:
        if rec.seq != self.expected:
            reason = "gap" if rec.seq > self.expected else "out_of_order"
            raise _Bad(self.expected, reason, f"expected seq {self.expected}, found {rec.seq}")
        if rec.prev_hash != self.prev_hash:
            raise _Bad(rec.seq, "broken_link", "prev_hash does not match the previous record")
        computed = compute_entry_hash(
            rec.seq, rec.ts, rec.actor, rec.action, rec.subject, rec.prev_hash, rec.body
        )
        if computed != rec.entry_hash:
            raise _Bad(rec.seq, "hash_mismatch", "the record's content does not match its hash")
        verifier = self._verifier(rec.seq, rec.key_id, "signing")
        if self.current_key is not None and rec.key_id != self.current_key:
            raise _Bad(
                rec.seq,
                "key_not_current",
                f"signed by {rec.key_id} while {self.current_key} was the current key",
            )
        if not self._check_signature(verifier, bytes.fromhex(computed), rec.signature):
            raise _Bad(rec.seq, "bad_signature", f"signature does not verify with {rec.key_id}")
        if rec.action == SIGNING_KEY_ROTATED:
            self.current_key = self._check_rotation(rec)
        elif rec.cosignature is not None:
            raise _Bad(rec.seq, "unexpected_cosignature", "only key rotations carry one")
        elif self.current_key is None:
            self.current_key = rec.key_id
        self._check_checkpoints_at(rec)

    def _check_checkpoints_at(self, rec: _Record) -> None:
        for cp in self._checkpoints.get(rec.seq, ()):
            self._check_checkpoint(cp, rec.seq)
            if cp.head_hash != rec.entry_hash:
                raise _Bad(rec.seq, "checkpoint_mismatch", f"checkpoint at size {cp.size}")

    def _check_rotation(self, rec: _Record) -> str:
        try:
            body = json.loads(rec.body)
            new_key_id = str(body["new_key_id"])
            new_public = str(body["new_public_key"])
            old_key_id = str(body["old_key_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _Bad(rec.seq, "bad_rotation", "rotation body is malformed") from exc
        if old_key_id != rec.key_id:
            raise _Bad(rec.seq, "bad_rotation", "rotation not signed by the key it retires")
        if self._public.get(new_key_id) != new_public:
            raise _Bad(rec.seq, "bad_rotation", "new key does not match the keyring")
        verifier = self._verifier(rec.seq, new_key_id, "new")
        if rec.cosignature is None or not self._check_signature(
            verifier, rotation_message(rec.entry_hash), rec.cosignature
        ):
            raise _Bad(rec.seq, "bad_rotation", "missing or invalid co-signature of the new key")
        return new_key_id

    def feed(self, rec: _Record) -> bool:
        """Check one record; False once a bad record has been found."""
        try:
            self._check(rec)
        except _Bad as bad:
            self.first_bad = bad.bad
            return False
        except (ValueError, TypeError, AttributeError) as exc:
            self.first_bad = BadRecord(rec.seq, "malformed_record", str(exc))
            return False
        self.expected += 1
        self.prev_hash = rec.entry_hash
        return True

    def fail(self, seq: int, reason: str, detail: str) -> None:
        """Record a failure found outside `feed` (an unreadable row)."""
        self.first_bad = BadRecord(seq, reason, detail)

    def finish(self) -> None:
        """Checks that need the whole log: checkpoints beyond the head."""
        if self.first_bad is not None:
            return
        size = self.expected - 1
        beyond = sorted(s for s in self._checkpoints if s > size or s < 1)
        for cp_size in beyond:
            for cp in self._checkpoints[cp_size]:
                try:
                    self._check_checkpoint(cp, size + 1)
                except _Bad as bad:
                    self.first_bad = bad.bad
                    return
            if cp_size < 1:
                self.first_bad = BadRecord(1, "checkpoint_mismatch", f"checkpoint size {cp_size}")
                return
            self.first_bad = BadRecord(
                size + 1,
                "truncated_before_checkpoint",
                f"log has {size} records but a checkpoint covers {cp_size}",
            )
            return


_RECORD_COLUMNS = (
    _log.c.seq,
    _log.c.ts,
    _log.c.actor,
    _log.c.action,
    _log.c.subject,
    _log.c.body,
    _log.c.prev_hash,
    _log.c.entry_hash,
    _log.c.signature,
    _log.c.key_id,
    _log.c.cosignature,
)


def _record_of(row: Any) -> _Record:
    return _Record(
        row.seq,
        format_ts(row.ts),
        row.actor,
        row.action,
        row.subject,
        row.body,
        row.prev_hash,
        row.entry_hash,
        row.signature,
        row.key_id,
        row.cosignature,
    )


class _UnreadableRow(Exception):
    def __init__(self, seq: int, detail: str) -> None:
        super().__init__(detail)
        self.seq = seq
        self.detail = detail


def _stream_records(session: Session, page: int = _PAGE) -> Iterator[_Record]:
    """Every record in seq order, a page at a time (keyset pagination).

    A row whose stored value cannot even be decoded (a mangled timestamp) makes
    the page fail; that page is then re-read one row at a time to name the row.
    """
    last = 0
    while True:
        query = select(*_RECORD_COLUMNS).where(_log.c.seq > last).order_by(_log.c.seq)
        try:
            rows = session.execute(query.limit(page)).all()
        except (ValueError, TypeError) as exc:
            if page == 1:
                seq = session.execute(
                    select(func.min(_log.c.seq)).where(_log.c.seq > last)
                ).scalar_one()
                raise _UnreadableRow(int(seq), str(exc)) from exc
            yield from _stream_records_from(session, last)
            return
        if not rows:
            return
        for row in rows:
            yield _record_of(row)
        last = rows[-1].seq


def _stream_records_from(session: Session, last: int) -> Iterator[_Record]:
    while True:
        query = select(*_RECORD_COLUMNS).where(_log.c.seq > last).order_by(_log.c.seq).limit(1)
        try:
            row = session.execute(query).first()
        except (ValueError, TypeError) as exc:
            seq = session.execute(
                select(func.min(_log.c.seq)).where(_log.c.seq > last)
            ).scalar_one()
            raise _UnreadableRow(int(seq), str(exc)) from exc
        if row is None:
            return
        yield _record_of(row)
        last = row.seq


def _load_keyring(session: Session) -> dict[str, str]:
    return {row.key_id: row.public_key for row in session.execute(select(_keys))}


def _load_checkpoints(session: Session) -> list[Checkpoint]:
    rows = session.execute(select(_checkpoints).order_by(_checkpoints.c.size))
    return [_checkpoint_of(row) for row in rows]


def verify(
    session: Session,
    *,
    trusted_keys: Collection[str] | None = None,
    known_checkpoints: Iterable[Checkpoint] = (),
) -> VerifyReport:
    """Recompute every link, hash and signature in seq order; report the first bad record.

    `trusted_keys` (hex public keys from the auditor) restricts which keyring
    keys may sign. `known_checkpoints` adds checkpoints kept outside the
    database (e.g. from an earlier export): they are what reveals records
    removed after the latest checkpoint stored in the log.
    """
    checkpoints = _load_checkpoints(session)
    verifier = _ChainVerifier(
        _load_keyring(session), [*checkpoints, *known_checkpoints], trusted_keys
    )
    last: _Record | None = None
    try:
        for record in _stream_records(session):
            if not verifier.feed(record):
                break
            last = record
    except _UnreadableRow as exc:
        verifier.fail(exc.seq, "malformed_record", exc.detail)
    verifier.finish()
    if verifier.first_bad is None and last is not None:
        records, head_seq, head_hash = last.seq, last.seq, last.entry_hash
    elif verifier.first_bad is None:
        records, head_seq, head_hash = 0, 0, GENESIS_HASH
    else:
        records, head_seq, head_hash = _head_summary(session)
    return VerifyReport(
        ok=verifier.first_bad is None,
        records=records,
        head_seq=head_seq,
        head_hash=head_hash,
        checkpoints=verifier.checkpoint_count,
        latest_checkpoint=verifier.latest_checkpoint,
        first_bad=verifier.first_bad,
    )


def _head_summary(session: Session) -> tuple[int, int, str]:
    count, head_seq = session.execute(select(func.count(), func.max(_log.c.seq))).one()
    head_hash = None
    if head_seq is not None:
        head_hash = session.execute(
            select(_log.c.entry_hash).where(_log.c.seq == head_seq)
        ).scalar_one_or_none()
    return int(count), int(head_seq or 0), str(head_hash or GENESIS_HASH)


# --- export ----------------------------------------------------------------------


def export_header() -> dict[str, Any]:
    """The first line of an export: everything needed to recompute hashes."""
    return {
        "type": "header",
        "format": EXPORT_FORMAT,
        "domain_tag_hex": DOMAIN_TAG.hex(),
        "checkpoint_tag_hex": CHECKPOINT_TAG.hex(),
        "rotation_tag_hex": ROTATION_TAG.hex(),
        "hash": "sha256",
        "signature": "ed25519",
        "entry_hash_fields": ["seq", "ts", "actor", "action", "subject", "prev_hash", "body"],
        "length_prefix": "u64be",
        "genesis_prev_hash": GENESIS_HASH,
    }


def _line(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def export_jsonl(session: Session, out: TextIO) -> int:
    """Write the header, keyring, checkpoints and every record as JSON lines; return the count.

    Records carry `ts` and `body` as the exact texts that were hashed.
    """
    out.write(_line(export_header()))
    for row in session.execute(select(_keys).order_by(_keys.c.created_at, _keys.c.key_id)):
        out.write(
            _line(
                {
                    "type": "key",
                    "key_id": row.key_id,
                    "public_key": row.public_key,
                    "created_at": format_ts(row.created_at),
                    "retired_at": None if row.retired_at is None else format_ts(row.retired_at),
                }
            )
        )
    for cp in _load_checkpoints(session):
        out.write(_line({"type": "checkpoint", **asdict(cp)}))
    count = 0
    for rec in _stream_records(session):
        out.write(_line({"type": "record", **asdict(rec)}))
        count += 1
    return count


def read_checkpoints(lines: Iterable[str]) -> list[Checkpoint]:
    """The checkpoints in an export, to pass to `verify(known_checkpoints=...)`."""
    found = []
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        if item.get("type") == "checkpoint":
            found.append(_checkpoint_from(item))
    return found


def _checkpoint_from(item: Mapping[str, Any]) -> Checkpoint:
    return Checkpoint(
        int(item["size"]),
        str(item["head_hash"]),
        str(item["ts"]),
        str(item["key_id"]),
        str(item["signature"]),
    )


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item[name]
    if not isinstance(value, str):
        raise ValueError(f"record field {name} is not a string")
    return value


def _record_from(item: Mapping[str, Any]) -> _Record:
    seq = item["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError("record field seq is not an integer")
    cosignature = item.get("cosignature")
    return _Record(
        seq,
        _text(item, "ts"),
        _text(item, "actor"),
        _text(item, "action"),
        _text(item, "subject"),
        _text(item, "body"),
        _text(item, "prev_hash"),
        _text(item, "entry_hash"),
        _text(item, "signature"),
        _text(item, "key_id"),
        None if cosignature is None else _text(item, "cosignature"),
    )


def verify_export(
    lines: Iterable[str],
    *,
    trusted_keys: Collection[str] | None = None,
    known_checkpoints: Iterable[Checkpoint] = (),
) -> VerifyReport:
    """Verify an export with no database: same checks as `verify`.

    The export is read in one pass; keys and checkpoints precede the records.
    """
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator, "") or "{}")
        tag = bytes.fromhex(str(header.get("domain_tag_hex", "")))
    except (ValueError, AttributeError):
        return _export_failure(f"not a {EXPORT_FORMAT} export (unreadable header line)")
    if header.get("type") != "header" or header.get("format") != EXPORT_FORMAT:
        return _export_failure(f"not a {EXPORT_FORMAT} export (bad or missing header line)")
    if tag != DOMAIN_TAG:
        return _export_failure("the export's domain tag is not this format's")
    keys: dict[str, str] = {}
    checkpoints = list(known_checkpoints)
    verifier: _ChainVerifier | None = None
    records, head_seq, head_hash = 0, 0, GENESIS_HASH
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = item.get("type")
        except (ValueError, AttributeError):
            return _export_failure(f"line {number} is not a JSON object")
        if kind == "record":
            if verifier is None:
                verifier = _ChainVerifier(keys, checkpoints, trusted_keys)
            records += 1
            head_seq, head_hash = item.get("seq", 0), str(item.get("entry_hash", ""))
            if verifier.first_bad is not None:
                continue  # keep counting so the report gives the export's size
            try:
                record = _record_from(item)
            except (KeyError, ValueError, TypeError) as exc:
                verifier.fail(verifier.expected, "malformed_record", str(exc))
                continue
            verifier.feed(record)
        elif verifier is not None:
            return _export_failure(f"line {number}: keys and checkpoints must precede records")
        elif kind == "key":
            keys[str(item["key_id"])] = str(item["public_key"])
        elif kind == "checkpoint":
            checkpoints.append(_checkpoint_from(item))
    if verifier is None:
        verifier = _ChainVerifier(keys, checkpoints, trusted_keys)
    verifier.finish()
    return VerifyReport(
        ok=verifier.first_bad is None,
        records=records,
        head_seq=int(head_seq) if isinstance(head_seq, int) else 0,
        head_hash=head_hash,
        checkpoints=verifier.checkpoint_count,
        latest_checkpoint=verifier.latest_checkpoint,
        first_bad=verifier.first_bad,
    )


def _export_failure(detail: str) -> VerifyReport:
    return VerifyReport(
        ok=False,
        records=0,
        head_seq=0,
        head_hash=GENESIS_HASH,
        checkpoints=0,
        latest_checkpoint=None,
        first_bad=BadRecord(0, "malformed_export", detail),
    )
