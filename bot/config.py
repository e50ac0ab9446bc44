"""Settings read from the environment and an optional ``.env`` file.

Every setting has the environment variable name shown in README's settings table.
A missing or invalid value stops start-up with :class:`ConfigError`, whose message
names the variable and what to set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

SLACK_DEFAULT_API_URL = "https://slack.com/api/"


class Settings(BaseSettings):
    """Runtime configuration of the bot process."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    database_url: str | None = Field(default=None, alias="DATABASE_URL")

    slack_bot_token: str | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default=SLACK_DEFAULT_API_URL, alias="SLACK_API_URL")

    model: str = Field(default="smollm2", alias="CHATOPS_MODEL")
    llm_base_url: str | None = Field(default=None, alias="CHATOPS_LLM_BASE_URL")
    llm_api_key: str | None = Field(default=None, alias="CHATOPS_LLM_API_KEY")
    context_window: int = Field(default=4096, ge=512, le=131072, alias="CHATOPS_CONTEXT_WINDOW")
    max_answer_tokens: int = Field(default=160, ge=16, le=4096, alias="CHATOPS_MAX_ANSWER_TOKENS")
    model_threads: int | None = Field(default=None, ge=1, le=256, alias="CHATOPS_MODEL_THREADS")

    data_dir: Path = Field(default=Path("./var"), alias="CHATOPS_DATA_DIR")
    hr_contact: str = Field(default="your HR team", min_length=1, alias="CHATOPS_HR_CONTACT")
    company_name: str = Field(default="the company", min_length=1, alias="CHATOPS_COMPANY_NAME")

    hr_users: str = Field(default="", alias="CHATOPS_HR_USERS")
    admin_users: str = Field(default="", alias="CHATOPS_ADMIN_USERS")
    manager_users: str = Field(default="", alias="CHATOPS_MANAGER_USERS")

    retrieval_top_k: int = Field(default=4, ge=1, le=20, alias="CHATOPS_RETRIEVAL_TOP_K")
    min_relevance: float = Field(default=0.35, ge=-1.0, le=1.0, alias="CHATOPS_MIN_RELEVANCE")

    worker_concurrency: int = Field(default=1, ge=1, le=64, alias="CHATOPS_WORKER_CONCURRENCY")
    heartbeat_s: float = Field(default=10.0, gt=0, le=300, alias="CHATOPS_WORKER_HEARTBEAT_S")
    stalled_after_s: float = Field(default=30.0, gt=0, le=3600, alias="CHATOPS_STALLED_AFTER_S")
    log_level: str = Field(default="INFO", alias="CHATOPS_LOG_LEVEL")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError("must be a PostgreSQL URL such as postgresql://user:password@host:5432/chatops")
        return value.strip()

    @field_validator("slack_api_url")
    @classmethod
    def _check_slack_api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_bot_token")
    @classmethod
    def _check_bot_token(cls, value: str | None) -> str | None:
        if value and not value.startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value or None

    @field_validator("slack_app_token")
    @classmethod
    def _check_app_token(cls, value: str | None) -> str | None:
        if value and not value.startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value or None

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))

    def require_slack_http(self) -> None:
        """Raise ConfigError unless the Slack Events API can be served."""
        missing = [
            name
            for name, value in (
                ("SLACK_BOT_TOKEN", self.slack_bot_token),
                ("SLACK_SIGNING_SECRET", self.slack_signing_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set: copy the values from your Slack app's "
                "'Basic Information' and 'OAuth & Permissions' pages into the environment or .env"
            )


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one ConfigError that names each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field_name = str(error["loc"][0]) if error["loc"] else "?"
            variable = _variable_name(field_name)
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def _variable_name(field_name: str) -> str:
    field = Settings.model_fields.get(field_name)
    if field is not None and field.alias:
        return field.alias
    for field in Settings.model_fields.values():
        if field.alias and field.alias.lower() == field_name.lower():
            return field.alias
    return field_name.upper()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
