"""Local Slack test mode: try the Slack endpoint on one machine, with no Slack workspace.

When no Slack setting is given, ``chatops serve`` verifies events with a signing
secret generated on first start and kept in ``CHATOPS_DATA_DIR/local-slack.json``,
and posts replies to a Slack Web API stand-in on 127.0.0.1 that
``chatops slack test-event`` starts. Nothing is sent to slack.com in this mode.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

LOCAL_SLACK_PORT = 8091
LOCAL_BOT_TOKEN = "xoxb-local-test-mode"
LOCAL_BOT_USER_ID = "ULOCALBOT"


@dataclass(frozen=True)
class LocalSlack:
    signing_secret: str
    api_url: str

    @property
    def bot_token(self) -> str:
        return LOCAL_BOT_TOKEN


def local_slack_settings(data_dir: Path, *, port: int = LOCAL_SLACK_PORT) -> LocalSlack:
    """Return the local test-mode values, creating the signing secret on first use."""
    path = data_dir / "local-slack.json"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        stored = {"signing_secret": secrets.token_hex(16), "api_url": f"http://127.0.0.1:{port}/api/"}
        path.write_text(json.dumps(stored), encoding="utf-8")
        path.chmod(0o600)
    return LocalSlack(signing_secret=stored["signing_secret"], api_url=stored["api_url"])
