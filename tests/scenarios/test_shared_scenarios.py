"""Every shared scenario through the real path: CLI → store → engine → findings JSON.

Each scenario gets a fresh database, its own price book (STEWARD_PRICE_BOOK),
`steward cluster add` per cluster, `steward ingest` of its payload, `steward
scan`, then `steward findings --json`, whose output is checked against the
scenario's `expect` and `expect_absent`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings
from tests.factories import SCENARIOS, scenario

FILES = sorted(SCENARIOS.glob("*.json"))


def steward(env: dict[str, str], *args: str) -> str:
    """Run one CLI command; fail the test with its output when it fails."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, f"steward {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def matches(finding: dict[str, Any], expected: dict[str, Any]) -> bool:
    """True when a finding satisfies one `expect` entry."""
    if finding["rule"] != expected["rule"]:
        return False
    if expected.get("cluster") is not None and finding["cluster"] != expected["cluster"]:
        return False
    if not any(subject in finding["subject"] for subject in expected["subjects"]):
        return False
    if "monthly_usd" in expected and finding["monthly_usd"] != pytest.approx(
        expected["monthly_usd"], rel=0.01
    ):
        return False
    recommendation = finding["recommendation"]
    for key in ("target_gpu", "target_gpu_count", "replicas"):
        if key in expected and recommendation.get(key) != expected[key]:
            return False
    return "level" not in expected or finding["level"] == expected["level"]


def run_scenario(path: Path, settings: Settings, tmp_path: Path) -> list[dict[str, Any]]:
    """Play a scenario through the CLI and return `steward findings --json`."""
    case = scenario(path)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(case["price_book"]))
    env = {
        "STEWARD_DATABASE_URL": settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(settings.key_pepper_file),
        "STEWARD_PRICE_BOOK": str(prices),
    }
    for cluster in case["clusters"]:
        steward(
            env,
            "cluster", "add", cluster["name"],
            "--provider", cluster["provider"], "--region", cluster["region"],
        )  # fmt: skip
        payload = tmp_path / f"{cluster['name']}.json"
        payload.write_text(json.dumps(cluster["ingest"]))
        steward(env, "ingest", str(payload), "--cluster", cluster["name"])
    steward(env, "scan")
    return list(json.loads(steward(env, "findings", "--json")))


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_scenario(path: Path, settings: Settings, tmp_path: Path) -> None:
    case = scenario(path)
    findings = run_scenario(path, settings, tmp_path)
    described = json.dumps(
        [
            {k: f[k] for k in ("rule", "cluster", "subject", "monthly_usd", "recommendation")}
            for f in findings
        ],
        indent=1,
    )
    for expected in case["expect"]:
        assert any(matches(finding, expected) for finding in findings), (
            f"{case['id']}: expected {expected}\nfound {described}"
        )
    fired = {finding["rule"] for finding in findings}
    for absent in case["expect_absent"]:
        assert absent not in fired, f"{case['id']}: {absent} must not fire\nfound {described}"
    for finding in findings:
        assert finding["monthly_usd"] >= 0
        assert finding["status"] == "open"
        assert finding["level"] in ("model", "node", "fleet")
        assert (finding["cluster"] is None) == (finding["level"] == "fleet")


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 14, f"shared scenarios not found under {SCENARIOS}"
