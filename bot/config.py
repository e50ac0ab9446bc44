"""Settings read from the environment and an optional ``.env`` file.

Every setting has the environment variable name shown in README's settings table.
A missing or invalid value stops start-up with :class:`ConfigError`, whose message
names the variable and what to set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

SLACK_DEFAULT_API_URL = "https://slack.com/api/"

# The document that lists Bot Framework's token signing keys, as botbuilder 4.17.1's
# AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL names it (a unit test checks they match).
TEAMS_DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
TEAMS_APP_TYPES = ("SingleTenant", "MultiTenant", "UserAssignedMSI")


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
    # Seconds an answer may take before a "Looking into it…" message appears in the thread.
    slack_placeholder_after_s: float = Field(default=1.5, ge=0, le=60, alias="CHATOPS_SLACK_PLACEHOLDER_AFTER_S")

    teams_app_id: str | None = Field(default=None, alias="MicrosoftAppId")
    teams_app_password: str | None = Field(default=None, alias="MicrosoftAppPassword")
    teams_app_tenant_id: str | None = Field(default=None, alias="MicrosoftAppTenantId")
    teams_app_type: str = Field(default="SingleTenant", alias="MicrosoftAppType")
    # The signing keys of inbound Teams tokens are read from here; tests point it at a local server.
    teams_openid_metadata_url: str = Field(
        default=TEAMS_DEFAULT_OPENID_METADATA_URL, alias="CHATOPS_TEAMS_OPENID_METADATA_URL"
    )

    model: str = Field(default="smollm2", alias="CHATOPS_MODEL")
    llm_base_url: str | None = Field(default=None, alias="CHATOPS_LLM_BASE_URL")
    llm_api_key: str | None = Field(default=None, alias="CHATOPS_LLM_API_KEY")
    context_window: int = Field(default=4096, ge=512, le=131072, alias="CHATOPS_CONTEXT_WINDOW")
    max_answer_tokens: int = Field(default=160, ge=16, le=4096, alias="CHATOPS_MAX_ANSWER_TOKENS")
    model_threads: int | None = Field(default=None, ge=1, le=256, alias="CHATOPS_MODEL_THREADS")
    # Generation and embedding keep every core busy. At nice 10 they yield to the web
    # server, which must acknowledge Slack's events within 3 seconds, and to the database.
    model_nice: int = Field(default=10, ge=0, le=19, alias="CHATOPS_MODEL_NICE")

    data_dir: Path = Field(default=Path("./var"), alias="CHATOPS_DATA_DIR")
    hr_contact: str = Field(default="your HR team", min_length=1, alias="CHATOPS_HR_CONTACT")
    company_name: str = Field(default="the company", min_length=1, alias="CHATOPS_COMPANY_NAME")

    hr_users: str = Field(default="", alias="CHATOPS_HR_USERS")
    admin_users: str = Field(default="", alias="CHATOPS_ADMIN_USERS")
    manager_users: str = Field(default="", alias="CHATOPS_MANAGER_USERS")

    retrieval_top_k: int = Field(default=4, ge=1, le=20, alias="CHATOPS_RETRIEVAL_TOP_K")
    # HNSW's candidate list: more finds the true nearest chunks more often, and takes longer.
    retrieval_ef_search: int = Field(default=300, ge=1, le=1000, alias="CHATOPS_RETRIEVAL_EF_SEARCH")
    # Chunks that the full-text ranking's words may together occur in (see Retriever).
    retrieval_text_matches: int = Field(default=500, ge=1, alias="CHATOPS_RETRIEVAL_TEXT_MATCHES")
    min_relevance: float = Field(default=0.2, ge=-1.0, le=1.0, alias="CHATOPS_MIN_RELEVANCE")

    # HR answer policy. The thresholds were calibrated on the development question
    # set with `chatops eval hr`; EVALUATION.md gives the figures behind them.
    hr_candidate_chunks: int = Field(default=12, ge=1, le=50, alias="CHATOPS_HR_CANDIDATE_CHUNKS")
    hr_faq_min_similarity: float = Field(default=0.75, ge=-1.0, le=1.0, alias="CHATOPS_HR_FAQ_MIN_SIMILARITY")
    hr_faq_min_coverage: float = Field(default=0.5, ge=0.0, le=1.0, alias="CHATOPS_HR_FAQ_MIN_COVERAGE")
    hr_faq_topic_similarity: float = Field(default=0.6, ge=-1.0, le=1.0, alias="CHATOPS_HR_FAQ_TOPIC_SIMILARITY")
    hr_min_passage_score: float = Field(default=0.32, ge=-1.0, le=2.0, alias="CHATOPS_HR_MIN_PASSAGE_SCORE")
    hr_min_coverage: float = Field(default=0.2, ge=0.0, le=1.0, alias="CHATOPS_HR_MIN_COVERAGE")
    hr_max_unknown_share: float = Field(default=0.25, ge=0.0, le=1.0, alias="CHATOPS_HR_MAX_UNKNOWN_SHARE")
    hr_locations: str = Field(default="", alias="CHATOPS_HR_LOCATIONS")
    hr_model_answers: bool = Field(default=True, alias="CHATOPS_HR_MODEL_ANSWERS")
    hr_max_answer_chars: int = Field(default=600, ge=100, le=4000, alias="CHATOPS_HR_MAX_ANSWER_CHARS")
    # Answers are one or two sentences; a longer generation is cut and fails the grounding check.
    hr_answer_tokens: int = Field(default=64, ge=16, le=4096, alias="CHATOPS_HR_ANSWER_TOKENS")
    # Preparing embeds every passage of the knowledge base once, in the background.
    # Beyond this many chunks that would keep the CPU busy for long, so passages
    # are embedded when a question first retrieves them instead.
    hr_prepare_max_chunks: int = Field(default=20000, ge=0, alias="CHATOPS_HR_PREPARE_MAX_CHUNKS")

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

    @field_validator("teams_app_id", "teams_app_password", "teams_app_tenant_id")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("teams_app_type")
    @classmethod
    def _check_teams_app_type(cls, value: str) -> str:
        for app_type in TEAMS_APP_TYPES:
            if value.strip().lower() == app_type.lower():
                return app_type
        raise ValueError(f"must be one of {', '.join(TEAMS_APP_TYPES)}")

    @field_validator("teams_openid_metadata_url")
    @classmethod
    def _check_teams_metadata_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        local = parsed.hostname in {"127.0.0.1", "localhost", "::1"}
        if parsed.scheme != "https" and not (parsed.scheme == "http" and local):
            raise ValueError("must be an https URL (plain http is accepted only for 127.0.0.1 or localhost)")
        return value

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

    @property
    def teams_enabled(self) -> bool:
        return self.teams_app_id is not None

    def require_teams(self) -> None:
        """Raise ConfigError unless the credentials that MicrosoftAppType needs are all set."""
        needed = {
            "SingleTenant": ("MicrosoftAppId", "MicrosoftAppPassword", "MicrosoftAppTenantId"),
            "MultiTenant": ("MicrosoftAppId", "MicrosoftAppPassword"),
            "UserAssignedMSI": ("MicrosoftAppId", "MicrosoftAppTenantId"),
        }[self.teams_app_type]
        values = {
            "MicrosoftAppId": self.teams_app_id,
            "MicrosoftAppPassword": self.teams_app_password,
            "MicrosoftAppTenantId": self.teams_app_tenant_id,
        }
        missing = [name for name in needed if not values[name]]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set, but MicrosoftAppType={self.teams_app_type} needs "
                f"{', '.join(needed)}: copy them from the Azure Bot resource's Configuration page "
                "into the environment or .env"
            )

    def require_slack_socket_mode(self) -> None:
        """Raise ConfigError unless Socket Mode can connect: SLACK_APP_TOKEN needs SLACK_BOT_TOKEN."""
        if not self.slack_bot_token:
            raise ConfigError(
                "SLACK_BOT_TOKEN not set: Socket Mode (SLACK_APP_TOKEN) also needs the bot token from your "
                "Slack app's 'OAuth & Permissions' page, in the environment or .env"
            )

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
