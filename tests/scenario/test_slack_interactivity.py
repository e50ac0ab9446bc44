"""Slash commands, feedback buttons, the correction modal, the thread shortcut and shared files.

Signed interactivity and slash command requests go to the real endpoints of
``chatops serve`` on 127.0.0.1; ephemeral answers go to ``response_url``s served
by the fake Slack Web API.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import psycopg
import pytest

from bot.channels.slack.blocks import ACTION_HELPFUL, ACTION_NOT_HELPFUL, FEEDBACK_MODAL_ID
from bot.channels.slack.client import THREAD_PROGRESS_TEXT
from bot.channels.slack.commands import WORKING
from bot.channels.slack.files import NOT_ALLOWED
from bot.channels.slack.testing import (
    FakeSlackApi,
    block_action_payload,
    event_callback,
    form_body,
    interactivity_body,
    message_shortcut_payload,
    signed_headers,
    slash_command_fields,
    view_submission_payload,
)
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR
from tests.support import BOT_TOKEN, SIGNING_SECRET, BotProcess, bot_env, free_port, post_event

pytestmark = pytest.mark.model

CHANNEL = "C0TEST001"
HR_USER = "U0HRLEAD1"
ACK_LIMIT_S = 3.0
FORM = "application/x-www-form-urlencoded"
# Questions outside the HR sources are answered without a model call, which keeps these tests fast.
OFF_TOPIC = "Does the company reimburse llama grooming?"


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    store = SourceStore(db, get_embedder())
    await store.add_file(HANDBOOK_DIR / "sick-leave.md")
    await store.add_file(HANDBOOK_DIR / "parental-leave.md")
    await db.dispose()
    return db_urls


@pytest.fixture(scope="module")
async def fake_slack():
    slack = await FakeSlackApi(bot_token=BOT_TOKEN).start()
    slack.add_user("UHR00002", "Priya Shah")
    slack.add_user("U0EMPLOYEE1", "Sam Lee")
    yield slack
    await slack.stop()


@pytest.fixture(scope="module")
async def bot(indexed_db, fake_slack, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("interactivity")
    env = bot_env(
        database_url=indexed_db.libpq,
        slack_api_url=fake_slack.api_url,
        data_dir=data_dir,
        CHATOPS_HR_USERS=HR_USER,
        CHATOPS_MAX_ANSWER_TOKENS="48",
    )
    process = BotProcess(env=env, port=free_port(), log_path=data_dir / "serve.log")
    await process.start()
    yield process
    await process.stop()


def query(urls, sql: str, *params):
    with psycopg.connect(urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


async def post_form(bot: BotProcess, path: str, body: str) -> tuple[int, float, str]:
    headers = signed_headers(body, SIGNING_SECRET, content_type=FORM)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot.url}{path}", data=body, headers=headers) as response:
            return response.status, time.perf_counter() - started, await response.text()


async def wait_for_responses(slack: FakeSlackApi, response_url: str, count: int = 1, timeout: float = 180.0) -> list:
    await slack.wait_until(lambda: len(slack.responses(response_url)) >= count, timeout)
    return slack.responses(response_url)


async def ask_in_dm(bot: BotProcess, slack: FakeSlackApi, text: str, ts: str, event_id: str, channel: str = "D0DM0002") -> dict:
    event = {"type": "message", "user": "U0EMPLOYEE1", "text": text, "ts": ts, "channel": channel, "channel_type": "im"}
    await post_event(bot.url, event_callback(event, event_id=event_id))
    [answer] = await slack.wait_for_answers(channel, ts, timeout=180)
    return answer


def opened_for(slack: FakeSlackApi, trigger_id: str) -> list:
    return [call for call in slack.calls_to("views.open") if call.params.get("trigger_id") == trigger_id]


def feedback_rows(urls, answer_id: str) -> list:
    return query(urls, "SELECT user_id, rating, comment, correction FROM feedback WHERE message_id = %s", answer_id)


def status_text(blocks: list) -> str:
    return " ".join(element["text"] for block in blocks if block["type"] == "context" for element in block["elements"])


async def test_rating_recorded_then_changed(bot, fake_slack, indexed_db):
    answer = await ask_in_dm(bot, fake_slack, OFF_TOPIC, "1700002000.000100", "Ev0FEED0001")
    answer_id = answer["blocks"][-1]["elements"][0]["value"]
    click = block_action_payload(ACTION_HELPFUL, answer_id, message_ts=answer["ts"], channel="D0DM0002", response_url=fake_slack.response_url())

    status, elapsed, _ = await post_form(bot, "/slack/interactive", interactivity_body(click))
    await fake_slack.wait_until(lambda: "👍 1" in status_text(fake_slack.messages[("D0DM0002", answer["ts"])].get("blocks") or []), 30)
    rows_after_up = feedback_rows(indexed_db, answer_id)
    down = block_action_payload(ACTION_NOT_HELPFUL, answer_id, message_ts=answer["ts"], channel="D0DM0002", response_url=fake_slack.response_url())
    second_status, _, _ = await post_form(bot, "/slack/interactive", interactivity_body(down))
    await fake_slack.wait_until(lambda: "👎 1" in status_text(fake_slack.messages[("D0DM0002", answer["ts"])].get("blocks") or []), 30)

    assert (status, second_status) == (200, 200)
    assert elapsed < ACK_LIMIT_S
    assert rows_after_up == [("U0EMPLOYEE1", "up", None, None)]
    assert feedback_rows(indexed_db, answer_id) == [("U0EMPLOYEE1", "down", None, None)]
    blocks = fake_slack.messages[("D0DM0002", answer["ts"])]["blocks"]
    assert "Feedback recorded" in status_text(blocks)
    assert "👍 0" in status_text(blocks)
    assert [block["type"] for block in blocks if block["type"] == "actions"] == ["actions"]


async def test_not_helpful_opens_modal_and_stores_correction(bot, fake_slack, indexed_db):
    answer = await ask_in_dm(bot, fake_slack, OFF_TOPIC, "1700002100.000100", "Ev0FEED0002")
    answer_id = answer["blocks"][-1]["elements"][0]["value"]
    click = block_action_payload(ACTION_NOT_HELPFUL, answer_id, message_ts=answer["ts"], channel="D0DM0002", response_url=fake_slack.response_url())

    status, _, _ = await post_form(bot, "/slack/interactive", interactivity_body(click))
    await fake_slack.wait_until(lambda: opened_for(fake_slack, click["trigger_id"]), 30)
    [opened] = opened_for(fake_slack, click["trigger_id"])
    view = opened.params["view"]
    submission = view_submission_payload(
        FEEDBACK_MODAL_ID,
        view["private_metadata"],
        {"problem": "It did not answer about part-timers", "correction": "Part-timers get pro-rata sick days."},
    )
    submit_status, _, submit_body = await post_form(bot, "/slack/interactive", interactivity_body(submission))

    assert status == 200
    assert view["callback_id"] == FEEDBACK_MODAL_ID
    assert json.loads(view["private_metadata"]) == {"answer_id": answer_id}
    assert submit_status == 200
    assert submit_body == ""
    assert feedback_rows(indexed_db, answer_id) == [
        ("U0EMPLOYEE1", "down", "It did not answer about part-timers", "Part-timers get pro-rata sick days.")
    ]


async def test_empty_correction_form_rejected(bot, indexed_db):
    submission = view_submission_payload(FEEDBACK_MODAL_ID, json.dumps({"answer_id": "00000000-0000-0000-0000-000000000000"}), {"problem": " ", "correction": None})

    status, _, body = await post_form(bot, "/slack/interactive", interactivity_body(submission))

    assert status == 200
    assert json.loads(body)["response_action"] == "errors"
    assert "problem" in json.loads(body)["errors"]


async def test_ask_command_answered_privately(bot, fake_slack, indexed_db):
    response_url = fake_slack.response_url()
    fields = slash_command_fields("/ask", "How many paid sick days do I get?", response_url=response_url)

    status, elapsed, body = await post_form(bot, "/slack/commands", form_body(fields))
    [answer] = await wait_for_responses(fake_slack, response_url)
    repeat_status, _, repeat_body = await post_form(bot, "/slack/commands", form_body(fields))
    await asyncio.sleep(1.5)

    assert status == 200
    assert elapsed < ACK_LIMIT_S
    assert WORKING in body
    assert answer.params["response_type"] == "ephemeral"
    assert any(block["type"] == "actions" for block in answer.params["blocks"])
    assert (repeat_status, repeat_body) == (200, "")
    assert len(fake_slack.responses(response_url)) == 1
    stored = query(indexed_db, "SELECT role, text FROM messages WHERE event_key = %s ORDER BY created_at", f"slack-command:T0TEST001:{fields['trigger_id']}")
    assert [row[0] for row in stored] == ["user", "assistant"]
    assert stored[0][1] == "ask How many paid sick days do I get?"
    assert not [call for call in fake_slack.calls_to("chat.postMessage") if call.params.get("channel") == CHANNEL and call.params.get("text") == stored[1][1]]


@pytest.mark.parametrize(
    ("command", "text", "routed"),
    [
        ("/chatops", "help", "help"),
        ("/chatops", "", "help"),
        ("/summarize", "ticket 4412: printer on floor 3 jams daily", "summarize ticket 4412: printer on floor 3 jams daily"),
        ("/report", "weekly HR questions", "report weekly HR questions"),
    ],
)
async def test_commands_routed_and_answered(bot, fake_slack, indexed_db, command, text, routed):
    response_url = fake_slack.response_url()
    fields = slash_command_fields(command, text, response_url=response_url)

    status, _, _ = await post_form(bot, "/slack/commands", form_body(fields))
    [answer] = await wait_for_responses(fake_slack, response_url)

    assert status == 200
    assert answer.params["text"]
    stored = query(indexed_db, "SELECT text FROM messages WHERE event_key = %s AND role = 'user'", f"slack-command:T0TEST001:{fields['trigger_id']}")
    assert stored == [(routed,)]
    if routed == "help":
        assert "Here is what I can do" in answer.params["text"]
    if routed.startswith(("summarize", "report")):
        # No summary or report skill is installed: the text must not reach HR Q&A.
        assert "does not offer" in answer.params["text"]


async def test_command_without_text_shows_usage(bot, fake_slack, indexed_db):
    fields = slash_command_fields("/ask", "  ", response_url=fake_slack.response_url())

    status, _, body = await post_form(bot, "/slack/commands", form_body(fields))

    assert status == 200
    assert "/ask how many sick days" in body
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", f"%{fields['trigger_id']}") == [(0,)]


async def test_ephemeral_answer_feedback_replaces_original(bot, fake_slack, indexed_db):
    response_url = fake_slack.response_url()
    await post_form(bot, "/slack/commands", form_body(slash_command_fields("/ask", OFF_TOPIC, response_url=response_url)))
    [answer] = await wait_for_responses(fake_slack, response_url)
    answer_id = answer.params["blocks"][-1]["elements"][0]["value"]
    click_url = fake_slack.response_url()
    click = block_action_payload(ACTION_HELPFUL, answer_id, message_ts="1700002300.000100", response_url=click_url, ephemeral=True)

    status, _, _ = await post_form(bot, "/slack/interactive", interactivity_body(click))
    [redraw] = await wait_for_responses(fake_slack, click_url, timeout=30)

    assert status == 200
    assert redraw.params["replace_original"] is True
    assert "👍 1" in status_text(redraw.params["blocks"])
    assert feedback_rows(indexed_db, answer_id) == [("U0EMPLOYEE1", "up", None, None)]


async def test_summarize_thread_shortcut_reads_thread(bot, fake_slack, indexed_db):
    root, reply = "1700002400.000100", "1700002400.000200"
    fake_slack.add_message(CHANNEL, root, "Who approves carer leave? <@UHR00002> do you know?", user="U0EMPLOYEE1")
    fake_slack.add_message(CHANNEL, reply, "Managers approve it, then HR records it in PeopleHub.", user="UHR00002", thread_ts=root)
    response_url = fake_slack.response_url()
    shortcut = message_shortcut_payload("summarize_thread", message_ts=reply, thread_ts=root, response_url=response_url)

    status, elapsed, _ = await post_form(bot, "/slack/interactive", interactivity_body(shortcut))
    progress, answer = await wait_for_responses(fake_slack, response_url, count=2)

    assert status == 200
    assert elapsed < ACK_LIMIT_S
    assert progress.params["text"] == THREAD_PROGRESS_TEXT
    assert answer.params["response_type"] == "ephemeral"
    [(question,)] = query(indexed_db, "SELECT text FROM messages WHERE event_key = %s AND role = 'user'", f"slack-shortcut:T0TEST001:{shortcut['trigger_id']}")
    assert question == (
        "summarize Sam Lee: Who approves carer leave? Priya Shah do you know?\n"
        "Priya Shah: Managers approve it, then HR records it in PeopleHub."
    )


async def test_summarize_thread_outside_channel_explained(bot, fake_slack):
    fake_slack.errors["conversations.replies"] = ["not_in_channel"]
    response_url = fake_slack.response_url()
    shortcut = message_shortcut_payload("summarize_thread", message_ts="1700002500.000100", channel="C0PRIVATE1", response_url=response_url)

    await post_form(bot, "/slack/interactive", interactivity_body(shortcut))
    answer = (await wait_for_responses(fake_slack, response_url, count=2))[-1]

    assert "not a member of the channel" in answer.params["text"]


def file_share_event(file: dict, *, user: str, channel: str, ts: str) -> dict:
    return {"type": "message", "subtype": "file_share", "user": user, "text": "", "files": [file], "ts": ts, "channel": channel, "channel_type": "im"}


async def test_hr_shared_file_becomes_source(bot, fake_slack, indexed_db):
    content = b"# Carer Leave\n\nEmployees get five paid carer days per calendar year.\n\n## Requests\n\nAsk your manager first.\n"
    file = fake_slack.add_file("F0TEST001", "carer-leave.md", content)
    ts = "1700002600.000100"

    await post_event(bot.url, event_callback(file_share_event(file, user=HR_USER, channel="D0HR0001", ts=ts), event_id="Ev0FILE0001"))
    [answer] = await fake_slack.wait_for_answers("D0HR0001", ts, timeout=180)

    [(title, owner, chunks)] = query(indexed_db, "SELECT title, owner, chunk_count FROM knowledge_sources WHERE origin LIKE %s", "%carer-leave.md")
    assert (title, owner) == ("Carer Leave", HR_USER)
    assert chunks >= 1
    assert f"{chunks} chunks" in answer["text"]
    [download] = fake_slack.calls_to("file_download")
    assert download.headers["authorization-present"] == "True"


async def test_shared_file_from_employee_refused(bot, fake_slack, indexed_db):
    file = fake_slack.add_file("F0TEST002", "my-notes.md", b"# Notes\n\nEveryone gets a pony.\n")
    ts = "1700002700.000100"

    await post_event(bot.url, event_callback(file_share_event(file, user="U0EMPLOYEE1", channel="D0DM0002", ts=ts), event_id="Ev0FILE0002"))
    [answer] = await fake_slack.wait_for_answers("D0DM0002", ts, timeout=180)

    assert answer["text"] == NOT_ALLOWED
    assert query(indexed_db, "SELECT count(*) FROM knowledge_sources WHERE origin LIKE %s", "%my-notes.md") == [(0,)]
    assert not [call for call in fake_slack.calls_to("file_download") if call.params["file"] == "F0TEST002"]


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("payload not json", "payload=%7Bnot+json"),
        ("payload is a list", "payload=%5B1%2C2%5D"),
        ("block action without actions", interactivity_body({"type": "block_actions", "user": {"id": "U1"}})),
        ("block action with odd fields", interactivity_body({"type": "block_actions", "user": "U1", "container": 5, "actions": [{"action_id": ACTION_HELPFUL, "value": 7}]})),
        ("action value not an answer id", interactivity_body(block_action_payload(ACTION_HELPFUL, "not-a-uuid", message_ts="1.1", response_url="http://127.0.0.1:9/x"))),
        ("view without type", interactivity_body({"type": "view_submission", "user": {"id": "U1"}, "view": {"callback_id": FEEDBACK_MODAL_ID}})),
        ("view with odd metadata", interactivity_body({"type": "view_submission", "user": {"id": "U1"}, "view": {"type": "modal", "callback_id": FEEDBACK_MODAL_ID, "private_metadata": {"a": 1}, "state": 3}})),
        ("user is a number", interactivity_body({"type": "block_actions", "user": 5, "actions": [{"action_id": ACTION_HELPFUL}]})),
        ("actions is empty", interactivity_body({"type": "block_actions", "user": {"id": "U1"}, "actions": []})),
        ("shortcut without message", interactivity_body({"type": "message_action", "callback_id": "summarize_thread", "trigger_id": "1.2.3"})),
        ("command without fields", form_body({"command": "/ask", "text": "hi"})),
        ("unknown command", form_body({"command": "/unknown", "text": "hi"})),
    ],
)
async def test_malformed_interactivity_not_5xx(bot, indexed_db, case, body):
    events_before = query(indexed_db, "SELECT count(*) FROM processed_events")

    status, _, _ = await post_form(bot, "/slack/interactive", body)

    assert 200 <= status < 500, f"{case}: HTTP {status}\n{bot.log()}"
    assert query(indexed_db, "SELECT count(*) FROM processed_events") == events_before
