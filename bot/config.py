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
    digest_tz: str = Field("UTC", description="time zone of the Monday 09:00 digest")

    @field_validator("approvers", mode="before")
    @classmethod
    def _split_approvers(cls, value: object) -> object:
        return _comma_list(value)
