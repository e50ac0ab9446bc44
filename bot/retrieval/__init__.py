"""Retrieval of knowledge-base passages: chunking documents and embedding text."""

from bot.retrieval.chunking import Chunk, chunk_markdown, chunk_text
from bot.retrieval.embedder import (
    EMBEDDING_DIM,
    Embedder,
    EmbeddingModelError,
    get_embedder,
)

__all__ = [
    "EMBEDDING_DIM",
    "Chunk",
    "Embedder",
    "EmbeddingModelError",
    "chunk_markdown",
    "chunk_text",
    "get_embedder",
]
