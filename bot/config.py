"""Steward's configuration: every environment variable, in one Settings class."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Actuator = Literal["dry-run", "webhook", "kubernetes"]


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """All settings are optional; each field documents its variable."""

    model_config = SettingsConfigDict(env_prefix="STEWARD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./steward.db",
        description="SQLAlchemy URL: sqlite:///PATH (embedded) or postgresql+psycopg://…",
    )
    price_book: Path | None = Field(
        None,
        description="YAML/JSON price book (GPU id → USD per GPU-hour) replacing the bundled one",
    )
    engine_config: Path | None = Field(
        None, description="YAML overriding rule thresholds (`thresholds:`) and capacity constants"
    )
    slack_bot_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SLACK_BOT_TOKEN", "STEWARD_SLACK_BOT_TOKEN"),
        description="Slack bot token (xoxb-…); unset = Slack off",
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "STEWARD_SLACK_SIGNING_SECRET"),
        description="Slack signing secret used to verify /slack/events",
    )
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL")
    findings_channel: str | None = Field(None, description="channel id for findings")
    digest_channel: str | None = Field(None, description="channel id for the weekly digest")
    audit_channel: str | None = Field(None, description="channel id for audit notices")
    approvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated Slack user ids allowed to decide"
    )
    cluster_approvers: dict[str, list[str]] = Field(
        default_factory=dict,
        description='JSON {"cluster": ["U123", …]}: who else may decide that cluster\'s findings',
    )
    cluster_channels: dict[str, str] = Field(
        default_factory=dict,
        description='JSON {"cluster": "C123"}: findings channel per cluster (else the default)',
    )
    slack_max_bytes: int = Field(
        262_144, gt=0, description="largest accepted /slack/events body, in bytes"
    )
    slack_work_concurrency: int = Field(
        4, gt=0, description="Slack clicks and commands worked on at once after their ack"
    )
    signing_key_file: Path = Field(
        Path("./steward-signing.key"),
        description="Ed25519 audit signing key; created with mode 0600 when absent",
    )
    key_pepper: SecretStr | None = Field(
        None, description="server-side pepper for API key hashes (else STEWARD_KEY_PEPPER_FILE)"
    )
    key_pepper_file: Path = Field(
        Path("./steward-pepper.key"),
        description="file holding the API key pepper; created with mode 0600 when absent",
    )
    actuator: Actuator = Field("dry-run", description="dry-run, webhook or kubernetes")
    webhook_url: str | None = Field(None, description="where the webhook actuator posts plans")
    webhook_secret: SecretStr | None = Field(None, description="HMAC secret of webhook posts")
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the admin HTTP API; unset = admin API off"
    )
    llm_url: str | None = Field(None, description="OpenAI-compatible base URL; unset = templates")
    llm_model: str | None = Field(None, description="model name sent to the LLM endpoint")
    llm_api_key: SecretStr | None = Field(None, description="API key of the LLM endpoint")
    llm_timeout_seconds: float = Field(
        8.0, gt=0, description="wait per LLM call; one retry, then the template's text is used"
    )
    ingest_max_bytes: int = Field(5_000_000, gt=0, description="largest accepted ingest body")
    fact_history_limit: int = Field(100, gt=0, description="fact sets kept per workload")
    fact_ttl_hours: float = Field(
        72.0, gt=0, description="workloads not reported for this long leave the evaluation"
    )
    key_grace_hours: float = Field(
        24.0, ge=0, description="default grace of the old key on rotate-key"
    )
    auth_failure_audit_seconds: float = Field(
        60.0, ge=0, description="at most one auth.failed audit record per key id per interval"
    )
    finding_change_fraction: float = Field(
        0.10, ge=0, description="a finding's dollar change above this fraction is an audit record"
    )
    finding_regrow_factor: float = Field(
        1.5, ge=1, description="a dismissed finding speaks again when its figure grows this much"
    )
    slack_min_monthly_usd: float = Field(
        100.0, ge=0, description="findings below this dollar figure are not posted to Slack"
    )
    actuation_tolerance: float = Field(
        0.25, ge=0, description="an approved figure that moved more than this fraction is stale"
    )
    actuation_lease_seconds: float = Field(
        300, gt=0, description="a claimed actuation another worker may take over after this"
    )
    actuation_poll_seconds: float = Field(
        10, gt=0, description="how often each replica looks for approved changes to carry out"
    )
    outcome_window_hours: float = Field(
        72, gt=0, description="hours to see an actuated change in the facts before `unverified`"
    )
    revert_window_hours: float = Field(
        24, ge=0, description="hours after actuation during which Revert is offered"
    )
    digest_tz: str = Field("UTC", description="time zone of the Monday 09:00 digest")
    pull_interval_seconds: int = Field(
        300, gt=0, description="default interval between pulls of a cluster's registered sources"
    )
    pull_window_seconds: int = Field(
        3600, gt=0, description="PromQL window of pulled averages, rates and quantiles"
    )
    pull_concurrency: int = Field(16, gt=0, description="clusters pulled at the same time")
    pull_request_timeout_seconds: float = Field(
        10.0, gt=0, description="timeout of each HTTP request of a pull"
    )
    pull_cluster_timeout_seconds: float = Field(
        60.0, gt=0, description="a cluster's whole pull is abandoned after this long"
    )
    pull_backoff_max_seconds: int = Field(
        3600, gt=0, description="longest wait before retrying a cluster whose pulls fail"
    )
    pull_scrape_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="scrape interval of pulled series; under half the expected samples is partial",
    )
    pull_stale_seconds: float = Field(
        300.0, gt=0, description="a series with no sample this recent is stale"
    )
    scheduler_tick_seconds: float = Field(
        30.0, gt=0, description="how often the scheduler looks for clusters due a pull"
    )
    leader_retry_seconds: float = Field(
        15.0, gt=0, description="how often a follower replica tries to take scheduler leadership"
    )
    fact_retention_days: float = Field(
        30.0, gt=0, description="fact history older than this is deleted by the retention job"
    )

    @field_validator("approvers", mode="before")
    @classmethod
    def _split_approvers(cls, value: object) -> object:
        return _comma_list(value)


TABLE_START = "<!-- settings:start -->"
TABLE_END = "<!-- settings:end -->"


def env_name(field: str) -> str:
    """The environment variable a Settings field is read from (its first alias)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _default(field: str) -> str:
    info = Settings.model_fields[field]
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        return "empty" if not value else f"`{value}`"
    if info.default is None:
        return "unset"
    return f"`{info.default}`"


def settings_table() -> str:
    """The README's configuration table, generated from the Settings class."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(field)}` | {_default(field)} | {description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
