"""The HTTP server: health check and the platforms' webhook endpoints."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import text

from bot.runtime import Runtime

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 2 * 1024 * 1024


def create_web_app(runtime: Runtime, *, slack_handler=None, teams_handler=None) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app["runtime"] = runtime
    app.router.add_get("/healthz", healthz)
    if slack_handler is not None:
        app.router.add_post("/slack/events", slack_handler)
        # Bolt tells events, interactivity and slash commands apart by their bodies,
        # so the manifest may point all three at /slack/events or at these.
        app.router.add_post("/slack/interactive", slack_handler)
        app.router.add_post("/slack/commands", slack_handler)
    if teams_handler is not None:
        app.router.add_post("/api/messages", teams_handler)
    return app


async def healthz(request: web.Request) -> web.Response:
    runtime: Runtime = request.app["runtime"]
    try:
        async with runtime.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        logger.warning("Health check failed: database unreachable (%s)", type(exc).__name__)
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})
