"""Running the bot: web endpoints and queue workers in one process or separately."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from bot.channels.base import ChannelClient
from bot.channels.slack.client import SlackChannelClient, create_web_client
from bot.channels.slack.events import create_bolt_app, slack_events_handler
from bot.config import Settings
from bot.local_slack import LOCAL_BOT_TOKEN, local_slack_settings
from bot.queue import MESSAGES_QUEUE, run_stalled_job_recovery
from bot.runtime import Runtime, prepare_database
from bot.web import create_web_app

logger = logging.getLogger(__name__)


def slack_credentials(settings: Settings) -> tuple[str, str, str, bool]:
    """Return (bot token, signing secret, API URL, local test mode)."""
    if settings.slack_bot_token or settings.slack_signing_secret:
        settings.require_slack_http()
        return settings.slack_bot_token, settings.slack_signing_secret, settings.slack_api_url, False
    local = local_slack_settings(settings.data_dir)
    return LOCAL_BOT_TOKEN, local.signing_secret, local.api_url, True


async def run_worker(runtime: Runtime, *, concurrency: int, stalled_after_s: float, heartbeat_s: float) -> None:
    """Process queued messages until cancelled, re-queueing jobs that a crashed worker left."""
    recovery = asyncio.create_task(
        run_stalled_job_recovery(runtime.queue, stalled_after_s=stalled_after_s, interval_s=max(heartbeat_s, 1.0))
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


async def serve(settings: Settings, *, host: str, port: int, with_worker: bool, announce=print) -> None:
    urls = await asyncio.to_thread(prepare_database, settings)
    token, signing_secret, api_url, local_mode = slack_credentials(settings)
    web_client = create_web_client(token, api_url)
    channels: dict[str, ChannelClient] = {"slack": SlackChannelClient(web_client)}
    runtime = await Runtime.start(settings, urls, with_model=with_worker, channels=channels)
    bolt_app = create_bolt_app(signing_secret=signing_secret, client=web_client, db=runtime.db)
    app = create_web_app(runtime, slack_handler=slack_events_handler(bolt_app, signing_secret))

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    announce(f"chatops listening on http://{host}:{port}")
    announce(f"  Slack events:  POST http://{host}:{port}/slack/events")
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
        await runner.cleanup()
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await runtime.aclose()


async def work(settings: Settings, *, announce=print) -> None:
    """Run queue workers only: no HTTP endpoints."""
    urls = await asyncio.to_thread(prepare_database, settings)
    token, _, api_url, _ = slack_credentials(settings)
    channels: dict[str, ChannelClient] = {"slack": SlackChannelClient(create_web_client(token, api_url))}
    runtime = await Runtime.start(settings, urls, with_model=True, channels=channels)
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
