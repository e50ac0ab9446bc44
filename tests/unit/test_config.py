"""Settings: validation errors name the variable, and README documents every setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://user@host/db"),
        ("SLACK_BOT_TOKEN", "xoxp-user-token"),
        ("SLACK_APP_TOKEN", "xoxb-not-an-app-token"),
        ("SLACK_API_URL", "slack.com/api"),
        ("CHATOPS_CONTEXT_WINDOW", "12"),
        ("CHATOPS_LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_setting_names_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        load_settings(**{variable: value})

    assert variable in str(caught.value)


def test_slack_http_requires_both_secrets():
    settings = load_settings(SLACK_BOT_TOKEN="xoxb-1")

    with pytest.raises(ConfigError) as caught:
        settings.require_slack_http()

    assert "SLACK_SIGNING_SECRET" in str(caught.value)


def test_readme_documents_every_setting():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

    missing = [field.alias for field in Settings.model_fields.values() if f"`{field.alias}`" not in readme]

    assert missing == []


def test_cli_reports_invalid_setting(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CHATOPS_LOG_LEVEL": "LOUD", "HOME": str(tmp_path)}

    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert "CHATOPS_LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_retrieval_settings_reach_the_retriever():
    from bot.retrieval.search import Retriever

    settings = load_settings(CHATOPS_RETRIEVAL_EF_SEARCH="400", CHATOPS_RETRIEVAL_TEXT_MATCHES="2000")
    retriever = Retriever.from_settings(None, None, settings)

    assert retriever.ef_search == 400
    assert retriever.max_text_matches == 2000
