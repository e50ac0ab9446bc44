"""Running the bot: web endpoints and queue workers in one process or separately."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from bot.channels.base import ChannelClient
from bot.channels.slack.app import create_bolt_app
from bot.channels.slack.client import SlackChannelClient, create_web_client
from bot.channels.slack.endpoint import slack_events_handler
from bot.channels.slack.events import EventIntake
from bot.channels.slack.socket_mode import connect_socket_mode
from bot.config import Settings
from bot.core.preparation import run_skill_preparation
from bot.core.roles import RoleDirectory
from bot.local_slack import LOCAL_BOT_TOKEN, local_slack_settings
from bot.queue import MESSAGES_QUEUE, run_stalled_job_recovery
from bot.runtime import Runtime, prepare_database
from bot.web import create_web_app

logger = logging.getLogger(__name__)


def slack_credentials(settings: Settings) -> tuple[str, str | None, str, bool]:
    """Return (bot token, signing secret, API URL, local test mode).

    The signing secret is None in Socket Mode without the HTTP endpoint.
    """
    if settings.slack_app_token and not settings.slack_signing_secret:
        settings.require_slack_socket_mode()
        return settings.slack_bot_token, None, settings.slack_api_url, False
    if settings.slack_bot_token or settings.slack_signing_secret:
        settings.require_slack_http()
        return settings.slack_bot_token, settings.slack_signing_secret, settings.slack_api_url, False
    local = local_slack_settings(settings.data_dir)
    return LOCAL_BOT_TOKEN, local.signing_secret, local.api_url, True


# How often the worker looks for changes of the knowledge base to prepare skills for.
PREPARATION_INTERVAL_S = 10.0


async def run_worker(runtime: Runtime, *, concurrency: int, stalled_after_s: float, heartbeat_s: float) -> None:
    """Process queued messages until cancelled, re-queueing jobs that a crashed worker left."""
    recovery = asyncio.create_task(
        run_stalled_job_recovery(runtime.queue, stalled_after_s=stalled_after_s, interval_s=max(heartbeat_s, 1.0))
    )
    assert runtime.router is not None, "the worker needs the model and skills loaded"
    preparation = asyncio.create_task(
        run_skill_preparation(
            runtime.urls.libpq, runtime.retriever, list(runtime.router.skills.values()), interval_s=PREPARATION_INTERVAL_S
        )
    )
    try:
        await runtime.queue.run_worker_async(
            queues=[MESSAGES_QUEUE],
            concurrency=concurrency,
            additional_context={"runtime": runtime},
            install_signal_handlers=False,
            update_heartbeat_interval=heartbeat_s,
            stalled_worker_timeout=stalled_after_s,
            listen_notify=True,
            delete_jobs="successful",
        )
    finally:
        recovery.cancel()
        preparation.cancel()


async def serve(settings: Settings, *, host: str, port: int, with_worker: bool, announce=print) -> None:
    if settings.teams_enabled:
        settings.require_teams()
    urls = await asyncio.to_thread(prepare_database, settings)
    token, signing_secret, api_url, local_mode = slack_credentials(settings)
    web_client = create_web_client(token, api_url)
    bolt_client = create_web_client(token, api_url, keep_alive=False)
    channels: dict[str, ChannelClient] = {"slack": _slack_channel(settings, web_client)}
    runtime = await Runtime.start(settings, urls, with_model=with_worker, channels=channels)
    _attach_slack(runtime)
    teams_handler = _install_teams(runtime)
    intake = EventIntake(runtime.db)
    bolt_app = create_bolt_app(signing_secret=signing_secret, client=bolt_client, db=runtime.db, intake=intake)
    slack_handler = slack_events_handler(bolt_app, signing_secret, intake) if signing_secret else None
    app = create_web_app(runtime, slack_handler=slack_handler, teams_handler=teams_handler)
    socket_mode = None
    if settings.slack_app_token:
        socket_mode = await connect_socket_mode(bolt_app, app_token=settings.slack_app_token, client=bolt_client)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    announce(f"chatops listening on http://{host}:{port}")
    if slack_handler is not None:
        announce(f"  Slack events:  POST http://{host}:{port}/slack/events")
    if socket_mode is not None:
        announce("  Slack:         connected in Socket Mode")
    if teams_handler is not None:
        announce(f"  Teams:         POST http://{host}:{port}/api/messages")
    announce(f"  Health check:  GET  http://{host}:{port}/healthz")
    if local_mode:
        announce(
            "  Slack is not configured: local test mode. Replies go to "
            f"{api_url} (try: chatops slack test-event \"How many sick days do I get?\")"
        )
    announce(f"  Worker: {'running in this process' if with_worker else 'not started (run chatops worker)'}")

    stop = _stop_event()
    worker = None
    if with_worker:
        worker = asyncio.create_task(
            run_worker(
                runtime,
                concurrency=settings.worker_concurrency,
                stalled_after_s=settings.stalled_after_s,
                heartbeat_s=settings.heartbeat_s,
            )
        )
    try:
        await _wait_for(stop, worker)
    finally:
        logger.info("Shutting down")
        if socket_mode is not None:
            await socket_mode.close_async()
        await runner.cleanup()
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await runtime.aclose()


async def work(settings: Settings, *, announce=print) -> None:
    """Run queue workers only: no HTTP endpoints."""
    if settings.teams_enabled:
        settings.require_teams()
    urls = await asyncio.to_thread(prepare_database, settings)
    token, _, api_url, _ = slack_credentials(settings)
    channels: dict[str, ChannelClient] = {"slack": _slack_channel(settings, create_web_client(token, api_url))}
    runtime = await Runtime.start(settings, urls, with_model=True, channels=channels)
    _attach_slack(runtime)
    _install_teams(runtime)
    announce(f"chatops worker running with concurrency {settings.worker_concurrency}")
    stop = _stop_event()
    worker = asyncio.create_task(
        run_worker(
            runtime,
            concurrency=settings.worker_concurrency,
            stalled_after_s=settings.stalled_after_s,
            heartbeat_s=settings.heartbeat_s,
        )
    )
    try:
        await _wait_for(stop, worker)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await runtime.aclose()


def _slack_channel(settings: Settings, web_client) -> SlackChannelClient:
    return SlackChannelClient(web_client, placeholder_after_s=settings.slack_placeholder_after_s)


def _attach_slack(runtime: Runtime) -> None:
    """Give the Slack client the database, source store and roles that delivery and shared files need."""
    roles = RoleDirectory.from_settings(runtime.settings)
    runtime.channels["slack"].attach(db=runtime.db, sources=runtime.sources, roles=roles)


def _install_teams(runtime: Runtime):
    """Register the Teams client when MicrosoftAppId is set; return the /api/messages handler or None."""
    if not runtime.settings.teams_enabled:
        return None
    from bot.channels.teams.adapter import install

    return install(runtime)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _wait_for(stop: asyncio.Event, worker: asyncio.Task | None) -> None:
    waiters = [asyncio.create_task(stop.wait())]
    if worker is not None:
        waiters.append(worker)
    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if worker is not None and worker in done:
        # A worker that stops by itself has failed; surface its error.
        worker.result()
    waiters[0].cancel()
