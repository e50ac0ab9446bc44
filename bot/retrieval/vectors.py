"""Embeddings of texts that skills compare with questions, kept in memory and in PostgreSQL.

A skill that scores sentence-sized passages of the retrieved chunks would
otherwise embed the same passages again for every question. The vectors are
stored once per embedding model and text digest, so every worker process, and the
same process after a restart, reads them instead of computing them.

Lookups and inserts run in their own short transactions; embedding happens
outside any transaction.

NOTE: rows are never deleted. Passages of replaced or removed sources keep their
vectors, about 1.6 KB a row. That is harmless for a handbook, but the table grows
with every edit of a large knowledge base, and nothing prunes it yet.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from bot.retrieval.embedder import Embedder
from bot.storage.database import Database
from bot.storage.models import TextEmbedding

logger = logging.getLogger(__name__)

# Rows per INSERT and digests per SELECT: large enough to amortise the round
# trip, small enough to keep each statement's parameters modest.
_STATEMENT_ROWS = 500


def digest(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class VectorCache:
    """Embeds texts, reusing vectors held in memory or stored in the ``text_embeddings`` table.

    ``memory_size`` bounds the vectors held in this process (least recently used
    go first); 384 float32 values take 1.5 KiB, so 20,000 take about 30 MiB.
    """

    def __init__(self, db: Database, embedder: Embedder, *, memory_size: int = 20000) -> None:
        self.db = db
        self.embedder = embedder
        self.memory_size = memory_size
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()

    async def embed(self, texts: Sequence[str], *, store: bool = True) -> np.ndarray:
        """Return one unit-norm row per text, in order.

        With ``store``, texts not in memory are looked up in the table, and those
        found neither there nor in memory are embedded and written to the table
        for other processes. Without it (texts that will not come again, such as
        a question), the table is neither read nor written.
        """
        keys = [digest(text) for text in texts]
        found = await self._lookup(keys, texts, store=store)
        for key in keys:
            self._memory.move_to_end(key)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)
        if not keys:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([found[key] for key in keys])

    async def store_missing(self, texts: Sequence[str]) -> int:
        """Embed and store the texts that the table does not hold yet; return how many.

        The vectors are also kept in memory while it has room, so that the first
        questions need no lookups. Once it is full, nothing is evicted for them.
        """
        unique = {digest(text): text for text in texts}
        room = self.memory_size - len(self._memory)
        if room > 0:
            found = await self._load(list(unique))
        else:
            found = dict.fromkeys(await self._stored_digests(list(unique)))
        missing = [(key, text) for key, text in unique.items() if key not in found]
        if missing:
            vectors = await self.embedder.embed_async([text for _, text in missing])
            computed = [(key, vector) for (key, _), vector in zip(missing, vectors)]
            await self._insert(computed)
            found.update(computed)
        for key, vector in found.items():
            if len(self._memory) >= self.memory_size:
                break
            if vector is not None and key not in self._memory:
                self._memory[key] = vector
        return len(missing)

    async def _lookup(self, keys: list[bytes], texts: Sequence[str], *, store: bool) -> dict[bytes, np.ndarray]:
        found = {key: self._memory[key] for key in keys if key in self._memory}
        wanted = list(dict.fromkeys(key for key in keys if key not in found))
        if wanted and store:
            found.update(await self._load(wanted))
        missing = [(key, text) for key, text in dict(zip(keys, texts)).items() if key not in found]
        if missing:
            vectors = await self.embedder.embed_async([text for _, text in missing])
            computed = list(zip((key for key, _ in missing), vectors))
            found.update(computed)
            if store:
                await self._insert(computed)
        for key in wanted:
            self._memory[key] = found[key]
        return found

    async def _load(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        loaded: dict[bytes, np.ndarray] = {}
        async with self.db.sessions() as session:
            for start in range(0, len(keys), _STATEMENT_ROWS):
                rows = await session.execute(
                    select(TextEmbedding.digest, TextEmbedding.embedding).where(
                        TextEmbedding.model == self.embedder.model_id,
                        TextEmbedding.digest.in_(keys[start : start + _STATEMENT_ROWS]),
                    )
                )
                for key, vector in rows:
                    loaded[bytes(key)] = np.asarray(vector, dtype=np.float32)
        return loaded

    async def _stored_digests(self, keys: list[bytes]) -> set[bytes]:
        stored: set[bytes] = set()
        async with self.db.sessions() as session:
            for start in range(0, len(keys), _STATEMENT_ROWS):
                rows = await session.execute(
                    select(TextEmbedding.digest).where(
                        TextEmbedding.model == self.embedder.model_id,
                        TextEmbedding.digest.in_(keys[start : start + _STATEMENT_ROWS]),
                    )
                )
                stored.update(bytes(key) for (key,) in rows)
        return stored

    async def _insert(self, rows: list[tuple[bytes, np.ndarray]]) -> None:
        if not rows:
            return
        async with self.db.transaction() as session:
            for start in range(0, len(rows), _STATEMENT_ROWS):
                values = [
                    {"model": self.embedder.model_id, "digest": key, "embedding": vector.tolist()}
                    for key, vector in rows[start : start + _STATEMENT_ROWS]
                ]
                await session.execute(pg_insert(TextEmbedding).values(values).on_conflict_do_nothing())
