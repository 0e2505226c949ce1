"""`steward cluster …` and `steward ingest` as an operator types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings
from tests.factories import PIQC_BUNDLE, payload, workload


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment pointing the CLI at the test database and key files."""
    return {
        "STEWARD_DATABASE_URL": settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(settings.key_pepper_file),
    }


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    """Invoke the CLI and return stdout; assert the exit code."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def test_add_list_rotate_revoke(env: dict[str, str]) -> None:
    added = json.loads(
        run(
            env,
            "cluster",
            "add",
            "prod-east",
            "--provider",
            "aws",
            "--region",
            "us-east-1",
            "--json",
        )
    )
    assert added["cluster"] == "prod-east"
    assert added["api_key"].startswith("stw_")
    listed = json.loads(run(env, "cluster", "list", "--json"))
    assert listed[0]["name"] == "prod-east" and listed[0]["key_status"] == "active"
    rotated = json.loads(run(env, "cluster", "rotate-key", "prod-east", "--grace", "1", "--json"))
    assert rotated["api_key"] != added["api_key"]
    assert json.loads(run(env, "cluster", "list", "--json"))[0]["key_status"] == "rotating"
    assert "Revoked 2 key(s)" in run(env, "cluster", "revoke-key", "prod-east")
    assert "prod-east" in run(env, "cluster", "list")


def test_errors_say_what_to_do_next(env: dict[str, str]) -> None:
    run(env, "cluster", "add", "prod-east", "--provider", "aws", "--region", "us-east-1")
    again = run(
        env, "cluster", "add", "prod-east", "--provider", "aws", "--region", "us-east-1", code=1
    )
    assert "rotate-key" in again
    assert "cluster list" in run(env, "cluster", "rotate-key", "nope", code=1)
    assert "slug" in run(
        env, "cluster", "add", "Bad_Name", "--provider", "aws", "--region", "r", code=1
    )


def test_ingest_accepts_a_bundle_and_a_payload(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "cluster", "add", "gke-test", "--provider", "gcp", "--region", "us-central1")
    assert "Ingested 1 workload(s)" in run(env, "ingest", str(PIQC_BUNDLE), "--cluster", "gke-test")
    doc = tmp_path / "payload.json"
    doc.write_text(json.dumps(payload("gke-test", workload("ns/a/deployment/x", k8s__replicas=2))))
    assert "Ingested 1 workload(s)" in run(env, "ingest", str(doc), "--cluster", "gke-test")


def test_ingest_refuses_bad_files_clearly(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "cluster", "add", "gke-test", "--provider", "gcp", "--region", "us-central1")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(payload("prod-west", workload("ns/a/deployment/x"))))
    assert "not 'gke-test'" in run(env, "ingest", str(other), "--cluster", "gke-test", code=1)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert "not valid JSON" in run(env, "ingest", str(broken), "--cluster", "gke-test", code=1)
    assert "cannot read" in run(
        env, "ingest", str(tmp_path / "missing.json"), "--cluster", "gke-test", code=1
    )
    assert "no cluster named" in run(env, "ingest", str(PIQC_BUNDLE), "--cluster", "nope", code=1)


def test_console_script_is_installed(env: dict[str, str]) -> None:
    steward = Path(sys.executable).with_name("steward")
    result = subprocess.run(
        [str(steward), "cluster", "list", "--json"],
        env={**env, "PATH": str(steward.parent)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_scan_reports_the_facts_a_bundle_lacks_and_claims_nothing(env: dict[str, str]) -> None:
    run(env, "cluster", "add", "gke-test", "--provider", "gcp", "--region", "us-central1")
    run(env, "ingest", str(PIQC_BUNDLE), "--cluster", "gke-test")
    report = json.loads(run(env, "scan", "--json"))
    assert report["findings"] == 0
    missing = report["facts_missing"]["gke-test"]
    assert any("obs.gpu.utilAvgPct" in gap["missing"] for gap in missing)
    assert json.loads(run(env, "findings", "--json")) == []
    printed = run(env, "scan")
    assert "facts missing in gke-test" in printed
