"""`steward audit ...` from the command line: verify, export, checkpoint, rotate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update
from typer.testing import CliRunner

from bot.cli_audit import audit_app
from store.audit import AuditRecord, append, verify_export
from store.db import make_engine, make_sessionmaker, transaction
from store.signing import load_signer

runner = CliRunner()


@pytest.fixture
def key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, engine: Engine) -> Path:
    """Environment for the CLI: the migrated test database and a key file."""
    path = tmp_path / "signing.key"
    monkeypatch.setenv("STEWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("STEWARD_SIGNING_KEY_FILE", str(path))
    monkeypatch.setenv("STEWARD_KEY_PEPPER_FILE", str(tmp_path / "pepper.key"))
    return path


def _append(db_url: str, key_file: Path, n: int) -> None:
    engine = make_engine(db_url)
    signer = load_signer(key_file)
    with transaction(make_sessionmaker(engine)) as session:
        for i in range(n):
            append(session, signer, actor="ops", action="key.issued", subject=f"k{i}", body={})
    engine.dispose()


def test_verify_passes_and_reports_json(db_url: str, key_file: Path) -> None:
    _append(db_url, key_file, 3)
    result = runner.invoke(audit_app, ["verify", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["records"] == 3 and report["first_bad"] is None
    assert len(report["head"]) == 64 and report["checkpoints"] == 0


def test_verify_fails_with_the_first_bad_record(
    db_url: str, key_file: Path, engine: Engine
) -> None:
    _append(db_url, key_file, 3)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(actor="mallory"))
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 1
    assert "record 2: hash_mismatch" in result.stderr
    result = runner.invoke(audit_app, ["verify", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_bad"]["seq"] == 2


def test_checkpoint_export_and_offline_verify(db_url: str, key_file: Path, tmp_path: Path) -> None:
    _append(db_url, key_file, 2)
    result = runner.invoke(audit_app, ["checkpoint"])
    assert result.exit_code == 0, result.output
    assert "checkpoint at size 2" in result.stdout
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(audit_app, ["export", "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = verify_export(out.read_text().splitlines())
    assert report.ok and report.records == 2 and report.checkpoints == 1
    result = runner.invoke(audit_app, ["verify", "--against", str(out)])
    assert result.exit_code == 0, result.output


def test_export_to_stdout_is_one_json_object_per_line(db_url: str, key_file: Path) -> None:
    _append(db_url, key_file, 2)
    result = runner.invoke(audit_app, ["export"])
    assert result.exit_code == 0, result.output
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert kinds == ["header", "key", "record", "record"]


def test_unknown_export_format_says_which_exist(key_file: Path) -> None:
    result = runner.invoke(audit_app, ["export", "--format", "csv"])
    assert result.exit_code == 1 and "jsonl" in result.stderr


def test_checkpoint_of_an_empty_log_explains(key_file: Path) -> None:
    result = runner.invoke(audit_app, ["checkpoint"])
    assert result.exit_code == 1 and "empty" in result.stderr


def test_rotate_signing_key_replaces_the_key_file(db_url: str, key_file: Path) -> None:
    _append(db_url, key_file, 2)
    old = load_signer(key_file)
    result = runner.invoke(audit_app, ["rotate-signing-key", "--as", "admin"])
    assert result.exit_code == 0, result.output
    new = load_signer(key_file)
    assert new.key_id != old.key_id and new.key_id in result.stdout
    assert not key_file.with_name(key_file.name + ".new").exists()
    _append(db_url, key_file, 1)
    result = runner.invoke(audit_app, ["verify", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == 4


def test_a_key_file_readable_by_others_is_refused_with_the_fix(key_file: Path) -> None:
    load_signer(key_file)
    key_file.chmod(0o644)
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 1 and f"chmod 600 {key_file}" in result.stderr
