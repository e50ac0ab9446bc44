"""The ``chatops sources`` commands: add, list, remove and reindex knowledge sources."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from bot.errors import ChatOpsError
from bot.progress import ProgressBar


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``sources`` command and its subcommands to the ``chatops`` parser."""
    sources = commands.add_parser("sources", help="manage HR knowledge sources").add_subparsers(
        title="sources commands"
    )

    add = sources.add_parser(
        "add", help="index files or folders (Markdown, text, HTML, PDF, DOCX, FAQ CSV)"
    )
    add.add_argument(
        "paths", nargs="+", type=Path, help="files or folders; a folder's files are read, not its subfolders"
    )
    add.add_argument("--audience", default="all", help="who may see these sources: all, managers or a group name")
    add.add_argument("--owner", default=None, help="who maintains these sources (name or e-mail)")
    add.add_argument("--force", action="store_true", help="index files again even when unchanged")
    add.set_defaults(handler=_add)

    listing = sources.add_parser("list", help="list indexed sources with audience, chunk count and update time")
    listing.set_defaults(handler=_list)

    remove = sources.add_parser("remove", help="remove a source and all its chunks")
    remove.add_argument("source", help="the source's path or origin as listed, or its id")
    remove.set_defaults(handler=_remove)

    reindex = sources.add_parser("reindex", help="embed every stored chunk again (after changing the embedding model)")
    reindex.set_defaults(handler=_reindex)


def expand_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Return (files to load, subfolders skipped): a folder's visible files, one level deep."""
    files: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_file():
                files.append(child)
            elif child.is_dir():
                skipped.append(child)
    return files, skipped


async def _start_runtime(settings):
    from bot.runtime import Runtime, prepare_database

    return await Runtime.start(settings, prepare_database(settings), with_model=False, bulk_embedding=True)


def _add(settings, args) -> int:
    files, skipped = expand_paths(args.paths)
    for folder in skipped:
        print(f"not reading subfolder {folder} (folders are read one level deep)", file=sys.stderr)
    return asyncio.run(_add_files(settings, args, files))


async def _add_files(settings, args, files: list[Path]) -> int:
    started = time.perf_counter()
    counts = {"added": 0, "replaced": 0, "unchanged": 0, "failed": 0}
    runtime = await _start_runtime(settings)
    progress = ProgressBar()
    done = 0

    def report(path: Path, outcome) -> None:
        nonlocal done
        done += 1
        if isinstance(outcome, ChatOpsError):
            counts["failed"] += 1
            progress.print(f"failed    {outcome}", file=sys.stderr)
        else:
            counts[outcome.status] += 1
            progress.print(f"{outcome.status:9} {outcome.chunk_count:4} chunks  {outcome.title}  ({path})")
        progress.show(done, len(files), path.name)

    try:
        progress.show(0, len(files), files[0].name if files else "")
        # The chunks of several files are embedded together, so results arrive in groups.
        await runtime.sources.add_files(
            files, audience=args.audience, owner=args.owner, force=args.force, on_result=report
        )
    finally:
        progress.close()
        await runtime.aclose()

    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    print(f"{len(files)} files: {summary} in {time.perf_counter() - started:.1f} s")
    return 1 if counts["failed"] else 0


def _list(settings, args) -> int:
    async def run():
        runtime = await _start_runtime(settings)
        try:
            return await runtime.sources.summaries()
        finally:
            await runtime.aclose()

    summaries = asyncio.run(run())
    if not summaries:
        print("no sources indexed; add some with: chatops sources add PATH")
        return 0

    rows = [("TITLE", "AUDIENCE", "CHUNKS", "UPDATED", "ORIGIN")]
    for source in summaries:
        audiences = ", ".join(f"{audience} {count}" for audience, count in source.chunk_audiences.items())
        rows.append(
            (
                source.title,
                audiences if len(source.chunk_audiences) > 1 else source.audience,
                str(source.chunk_count),
                source.updated_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                source.origin,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _remove(settings, args) -> int:
    async def run() -> int:
        runtime = await _start_runtime(settings)
        try:
            removed = await runtime.sources.remove(args.source)
            if not removed and not args.source.startswith("upload:"):
                # Files are stored under their absolute path; accept the relative one too.
                removed = await runtime.sources.remove(str(Path(args.source).resolve()))
            return removed
        finally:
            await runtime.aclose()

    if not asyncio.run(run()):
        print(f"no source {args.source!r}; see chatops sources list", file=sys.stderr)
        return 1
    print(f"removed {args.source}")
    return 0


def _reindex(settings, args) -> int:
    async def run():
        runtime = await _start_runtime(settings)
        progress = ProgressBar()

        def report(done: int, total: int, title: str) -> None:
            progress.print(f"reindexed {done}/{total}  {title}")
            progress.show(done, total, title)

        try:
            return await runtime.sources.reindex(progress=report)
        finally:
            progress.close()
            await runtime.aclose()

    started = time.perf_counter()
    result = asyncio.run(run())
    print(f"reindexed {result.source_count} sources, {result.chunk_count} chunks in {time.perf_counter() - started:.1f} s")
    return 0
