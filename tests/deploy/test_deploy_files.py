"""deploy/ parses, and every variable it sets is one the Settings class reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import AliasChoices

from bot.config import TABLE_END, TABLE_START, Settings, settings_table

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENV_NAME = re.compile(r"\b((?:STEWARD|SLACK)_[A-Z0-9_]+)\b")


def settings_env_names() -> set[str]:
    """Every environment variable Settings reads."""
    names: set[str] = set()
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_every_yaml_file_parses() -> None:
    files = [p for p in DEPLOY.rglob("*.yaml") if "templates" not in p.parts]
    assert len(files) >= 5
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(doc is not None for doc in documents), path


def test_the_slack_manifest_asks_for_the_minimal_scopes_and_one_url() -> None:
    manifest = yaml.safe_load((DEPLOY / "slack-app-manifest.yaml").read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == [
        "chat:write",
        "commands",
        "files:write",
    ]
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/steward"
    for sub in ("help", "findings", "explain", "clusters", "digest", "audit verify", "snooze"):
        assert sub in command["usage_hint"]
    assert command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")


def test_every_variable_the_deploy_files_set_exists_in_settings() -> None:
    known = settings_env_names()
    sources = [
        DEPLOY / "helm/steward/templates/deployment.yaml",
        DEPLOY / "compose.yaml",
        DEPLOY / "steward.env.example",
        DEPLOY / "Dockerfile",
    ]
    for source in sources:
        used = set(ENV_NAME.findall(source.read_text()))
        assert used, source
        assert used <= known, f"{source.name} sets unknown variables: {sorted(used - known)}"


def test_the_chart_values_cover_what_the_templates_use() -> None:
    values = yaml.safe_load((DEPLOY / "helm/steward/values.yaml").read_text())
    chart = yaml.safe_load((DEPLOY / "helm/steward/Chart.yaml").read_text())
    assert chart["name"] == "steward"
    assert values["replicaCount"] >= 2
    templates = " ".join(p.read_text() for p in (DEPLOY / "helm/steward/templates").glob("*"))
    for path in set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", templates)):
        node = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f".Values.{path} is not in values.yaml"
            node = node[part]


def test_the_actuator_rbac_grants_only_get_and_patch_on_deployments() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "rbac/actuator.yaml").read_text()))
    [role] = [doc for doc in documents if doc["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}
    ]
    chart = (DEPLOY / "helm/steward/templates/rbac.yaml").read_text()
    assert re.findall(r"resources: \[(.*?)\]", chart) == ['"deployments"']
    assert re.findall(r"verbs: \[(.*?)\]", chart) == ['"get", "patch"']


def test_the_readme_configuration_table_is_the_settings_class() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index(TABLE_START) + len(TABLE_START)
    end = readme.index(TABLE_END)
    assert readme[start:end].strip() == settings_table().strip(), (
        "README configuration table is out of date: run `python -m bot.config`"
    )


def _quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Quickstart") :]
    section = section[: section.index("\n## ", 4)]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_the_quickstart_is_two_commands_and_ci_runs_the_test_one() -> None:
    run, test = _quickstart_commands()
    assert run.endswith("steward demo")
    ci = (REPO / ".ci/run").read_text()
    for step in test.split(" && "):
        assert step in ci, f"the README's `{step}` is not what .ci/run does"
