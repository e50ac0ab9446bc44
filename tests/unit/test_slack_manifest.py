"""The Slack app manifest declares what the code listens to and calls, and no more."""

from __future__ import annotations

import pytest

from bot.channels.slack.commands import COMMAND_WORDS
from bot.channels.slack.interactivity import SUMMARIZE_THREAD_SHORTCUT
from tests.conftest import REPO_ROOT

yaml = pytest.importorskip("yaml")

MANIFEST = REPO_ROOT / "deploy" / "slack" / "manifest.yaml"
SCOPES = {
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "commands",
    "files:read",
    "groups:history",
    "im:history",
    "reactions:write",
    "users:read",
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def test_manifest_commands_match_code(manifest):
    assert {command["command"] for command in manifest["features"]["slash_commands"]} == set(COMMAND_WORDS)


def test_manifest_shortcut_matches_code(manifest):
    [shortcut] = manifest["features"]["shortcuts"]

    assert shortcut["callback_id"] == SUMMARIZE_THREAD_SHORTCUT
    assert shortcut["type"] == "message"


def test_manifest_scopes_exactly_used(manifest):
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES


def test_manifest_events_and_interactivity(manifest):
    settings = manifest["settings"]

    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.channels", "message.groups", "message.im"}
    assert settings["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
