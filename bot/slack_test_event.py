"""``chatops slack test-event``: ask a running bot in local test mode one question."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlparse

import aiohttp

from bot.channels.slack.testing import FakeSlackApi, app_mention_payload, signed_headers
from bot.local_slack import LOCAL_BOT_USER_ID, LocalSlack


async def send_test_event(question: str, *, bot_url: str, local: LocalSlack, timeout_s: float) -> str | None:
    """Serve the local Slack stand-in, send one signed app_mention and return the bot's reply text."""
    port = urlparse(local.api_url).port
    slack = await FakeSlackApi(bot_user_id=LOCAL_BOT_USER_ID).start(port=port)
    try:
        payload = app_mention_payload(question, event_id=f"Ev{uuid.uuid4().hex[:10].upper()}", bot_user_id=LOCAL_BOT_USER_ID)
        event = payload["event"]
        body = json.dumps(payload)
        started = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{bot_url.rstrip('/')}/slack/events", data=body, headers=signed_headers(body, local.signing_secret)
            ) as response:
                print(f"bot acknowledged with HTTP {response.status} in {(time.perf_counter() - started) * 1000:.0f} ms")
                if response.status != 200:
                    print(await response.text())
                    return None
        # A slow answer first shows a placeholder, which the answer then replaces.
        answers = await slack.wait_for_answers(event["channel"], event["ts"], timeout=timeout_s)
        if not answers:
            return None
        return str(answers[0]["text"])
    finally:
        await slack.stop()
