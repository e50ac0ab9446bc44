"""The Bolt app shared by the HTTP endpoint and Socket Mode: every Slack listener of the bot."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.slack.commands import register_commands
from bot.channels.slack.events import EventIntake, register_event_listeners
from bot.channels.slack.interactivity import register_interactivity
from bot.storage.database import Database


def create_bolt_app(
    *, signing_secret: str | None, client: AsyncWebClient, db: Database, intake: EventIntake | None = None
) -> AsyncApp:
    """A Bolt app whose listeners only store or queue work, so Slack gets its answer in milliseconds.

    ``process_before_response`` makes Bolt acknowledge after the listener returns:
    the message is in the queue before Slack hears 200, and a failure to queue
    returns an error so that Slack delivers the event again. ``signing_secret``
    may be None in Socket Mode, where Slack's requests arrive over the bot's own
    WebSocket connection and carry no signature. ``intake`` queues the messages
    of events; pass the one that the HTTP endpoint shares.
    """
    app = AsyncApp(
        signing_secret=signing_secret or "",
        client=client,
        process_before_response=True,
        # The bot's own messages are dropped in convert.to_incoming too, with other bots' ones.
        ignoring_self_events_enabled=True,
    )
    register_event_listeners(app, intake or EventIntake(db))
    register_commands(app, db)
    register_interactivity(app, db)
    return app
