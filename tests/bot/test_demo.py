"""`steward demo` as a newcomer runs it: a subprocess on a clean directory, offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bot.demo.run import fleet
from engine.evaluate import evaluate
from engine.facts import ClusterSnapshot, Fact, FleetSnapshot, Workload
from engine.prices import default_price_book
from engine.rules import RULE_IDS

STEWARD = str(Path(sys.executable).with_name("steward"))
SECTIONS = (
    "1. Findings",
    "Open savings",
    "2. The top finding as Slack shows it",
    "Block Kit Builder",
    "3. Approval and dry-run actuation",
    "already decided",
    "refused",
    "actuated — dry run",
    "4. Dismissal with a reason",
    "5. Audit log",
    "steward audit verify: verified",
)


def _clean_env() -> dict[str, str]:
    """The environment without any Steward or Slack configuration."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STEWARD_", "SLACK_"))
    }


def test_the_demo_runs_the_whole_loop_and_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        [STEWARD, "demo"],
        cwd=tmp_path,
        env={**_clean_env(), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for section in SECTIONS:
        assert section in result.stdout, f"missing {section!r} in:\n{result.stdout}"
    message = json.loads((tmp_path / "steward-demo-message.json").read_text())
    assert message["blocks"][0]["type"] == "section"
    listed = subprocess.run(
        [STEWARD, "findings", "--all", "--json"],
        cwd=tmp_path,
        env={
            **_clean_env(),
            "STEWARD_DATABASE_URL": f"sqlite:///{tmp_path / 'steward-demo.db'}",
            "STEWARD_SIGNING_KEY_FILE": str(tmp_path / "steward-demo-signing.key"),
            "STEWARD_KEY_PEPPER_FILE": str(tmp_path / "steward-demo-pepper.key"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    findings = json.loads(listed.stdout)
    assert {f["rule"] for f in findings} == set(RULE_IDS)
    statuses = {f["status"] for f in findings}
    assert {"actuated", "dismissed", "open"} <= statuses


def test_a_second_run_starts_from_a_fresh_database(tmp_path: Path) -> None:
    counts = []
    for _ in range(2):
        result = subprocess.run(
            [STEWARD, "demo"], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        found = re.search(r"verified — (\d+) records", result.stdout)
        assert found is not None, result.stdout
        counts.append(int(found.group(1)))
    assert counts[0] == counts[1]  # the log is rebuilt, not appended to


def test_every_rule_fires_on_the_demo_fleet() -> None:
    snapshot = FleetSnapshot(
        clusters=[
            ClusterSnapshot(
                name=cluster["name"],
                provider=cluster["provider"],
                region=cluster["region"],
                workloads=[
                    Workload(
                        workload_id=w["workloadId"],
                        facts={k: Fact.model_validate(v) for k, v in w["facts"].items()},
                    )
                    for w in cluster["workloads"]
                ],
            )
            for cluster in fleet()["clusters"]
        ]
    )
    evaluation = evaluate(snapshot, default_price_book())
    assert {finding.rule for finding in evaluation.findings} == set(RULE_IDS)
    providers = {c["provider"] for c in fleet()["clusters"]}
    regions = {c["region"] for c in fleet()["clusters"]}
    assert len(fleet()["clusters"]) == 3 and len(providers) == 2 and len(regions) == 3
