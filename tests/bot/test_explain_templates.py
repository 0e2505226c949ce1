"""Every rule's summary and detailed templates render, for every scenario and every variant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings
from bot.context import Context
from bot.explain import UnknownFinding, explain, render_detailed
from bot.wording import environment, summary
from engine.findings import Finding
from engine.rules import RULE_IDS
from tests.engine.enginekit import L4, found, run, served
from tests.scenarios.test_shared_scenarios import FILES, run_scenario

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
SECTIONS = ("*What was seen*", "*Why it fired*", "*The change*", "*Risks*", "*How to revert*")

PRESSURE = {
    "model.name": "meta-llama/Llama-3.1-70B-Instruct",
    "model.parameterCount": 70553706496,
    "model.numLayers": 80,
    "hardware.gpuType": "NVIDIA-A100-SXM4-80GB",
    "hardware.gpuCount": 4,
    "k8s.replicas": 1,
    "obs.vllm.kvCacheUsagePct": 96,
    "obs.vllm.requestsRunning": 48,
    "obs.vllm.requestsWaiting": 12,
    "obs.vllm.tokensPerSec": 700,
    "model.maxModelLen": 32768,
}
SMALL_UNNAMED = {
    "model.name": None,
    "model.parameterCount": 1235814400,
    "model.numLayers": 16,
    "model.numKvHeads": 8,
    "model.headDim": 64,
    "hardware.gpuType": "NVIDIA-L40S",
    "k8s.replicas": 1,
    "obs.vllm.kvCacheUsagePct": 1,
    "obs.vllm.requestsRunning": 2,
    "obs.vllm.tokensPerSec": 60,
}
HUGE = {
    "model.name": "meta-llama/Llama-3.1-405B-Instruct",
    "model.parameterCount": 405853388800,
    "model.numLayers": 126,
}


def variants() -> dict[str, Finding]:
    """Findings that take the templates' other branches than the scenarios do."""
    out: dict[str, Finding] = {}

    def one(label: str, rule: str, *items: Any, **kwargs: Any) -> None:
        [finding] = found(run(*items, **kwargs), rule)
        out[label] = finding

    h100 = {**PRESSURE, "hardware.gpuType": "NVIDIA-H100-80GB-HBM3"}
    one("kv fp8", "kv_cache_pressure", served("llama-70b", h100))
    one(
        "kv shorter length",
        "kv_cache_pressure",
        served(
            changes={
                "hardware.gpuType": "NVIDIA-A10G",
                "vllm.gpuMemoryUtilization": 0.8453,
                "obs.vllm.kvCacheUsagePct": 75,
                "obs.vllm.requestsWaiting": 2,
                "model.maxModelLen": 32768,
            }
        ),
        thresholds={"kv_pressure_pct": 70},
    )
    unknown = {**PRESSURE, "model.name": "acme/secret-70b", "model.numLayers": None}
    one("kv without capacity model", "kv_cache_pressure", served("x", unknown))
    one("oom without a fit", "oom_risk", served("llama-405b", HUGE), prices={"L4-24GB": L4})
    one("tier without a model name", "tier_misplacement", served("small", SMALL_UNNAMED))
    one(
        "imbalance without node or class",
        "cpu_gpu_imbalance",
        served(
            changes={"obs.gpu.utilAvgPct": 30, "obs.cpu.utilAvgPct": 95, "workload.class": None}
        ),
    )
    return out


VARIANTS = variants()


def check_rendered(finding: Finding, text: str) -> None:
    """A detailed explanation has every section, the summary, and no unrendered value."""
    for section in SECTIONS:
        assert section in text, f"{finding.rule}: no {section}\n{text}"
    assert summary(finding) in text
    assert "None" not in text, f"{finding.rule}: a missing value reached the text\n{text}"
    assert "{{" not in text and "{%" not in text


def test_every_rule_has_a_summary_and_a_detailed_template() -> None:
    for rule in RULE_IDS:
        assert (PROMPTS / "summary" / f"{rule}.j2").is_file(), rule
        assert (PROMPTS / "explain" / f"{rule}.j2").is_file(), rule


@pytest.mark.parametrize("label", sorted(VARIANTS))
def test_detailed_template_renders_for_each_variant(label: str) -> None:
    finding = VARIANTS[label]
    check_rendered(finding, render_detailed(finding))


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_templates_render_for_every_finding_of_every_scenario(
    path: Path, settings: Settings, ctx: Context, tmp_path: Path
) -> None:
    findings = run_scenario(path, settings, tmp_path)
    for item in findings:
        number = int(item["id"].removeprefix("F-"))
        explanation = explain(ctx, number, use_llm=False)
        assert explanation.drafted_by is None
        assert explanation.text == explanation.template_text
        assert explanation.text.startswith(f"*{item['id']} · {item['rule']}*")
        assert item["summary"] in explanation.text
        for section in SECTIONS:
            assert section in explanation.text
        assert "None" not in explanation.text


def test_the_scenarios_and_variants_cover_every_rule() -> None:
    # The scenario test above renders every finding each scenario produces; the shared
    # scenario suite checks each scenario produces its `expect` rules.
    rules = {finding.rule for finding in VARIANTS.values()}
    for path in FILES:
        case = json.loads(path.read_text())
        rules |= {expected["rule"] for expected in case["expect"]}
    assert rules == set(RULE_IDS)


def test_a_template_that_names_a_missing_field_fails() -> None:
    finding = VARIANTS["kv fp8"]
    broken = finding.model_copy(
        update={"evidence": {k: v for k, v in finding.evidence.items() if k != "options"}}
    )
    with pytest.raises(UndefinedError):
        render_detailed(broken)
    with pytest.raises(UndefinedError):
        environment().from_string("{{ evidence.nothing }}").render(evidence={})


def test_explain_of_an_unknown_id_is_a_lookup_error(ctx: Context) -> None:
    with pytest.raises(LookupError, match="no finding F-99"):
        explain(ctx, 99)
    with pytest.raises(UnknownFinding):
        explain(ctx, 99, use_llm=False)


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "STEWARD_DATABASE_URL": settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(settings.key_pepper_file),
    }


def test_steward_explain_prints_the_detailed_explanation(
    settings: Settings, tmp_path: Path
) -> None:
    [first] = [path for path in FILES if path.stem.startswith("v01")]
    [finding] = [
        f for f in run_scenario(first, settings, tmp_path) if f["rule"] == "tier_misplacement"
    ]
    runner = CliRunner()
    for spelling in (finding["id"], finding["id"].removeprefix("F-")):
        result = runner.invoke(app, ["explain", spelling, "--no-llm"], env=cli_env(settings))
        assert result.exit_code == 0, result.stderr
        assert "*Why it fired*" in result.stdout
        assert "$3,200/month" in result.stdout
        assert "A10G-24GB" in result.stdout


@pytest.mark.parametrize(
    ("argument", "message"), [("F-404", "no finding F-404"), ("twelve", "not a finding id")]
)
def test_steward_explain_of_an_unknown_id_exits_1(
    settings: Settings, ctx: Context, argument: str, message: str
) -> None:
    result = CliRunner().invoke(app, ["explain", argument], env=cli_env(settings))
    assert result.exit_code == 1
    assert message in result.stderr
