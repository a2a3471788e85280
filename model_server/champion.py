"""The champion the server scores with, and how a newer one replaces it without a restart or a failed request.

At start-up the server loads ``models:/movierec-hybrid@champion``
(``pipeline.registry.champion.load_champion``); then a background task asks the registry every
``MOVIEREC_MODEL_POLL_SECONDS`` which version the alias names. A new version is downloaded, loaded and
warmed up in a worker thread while the old one keeps serving, then swapped in with one assignment. A
request takes ``Champion.current`` once and scores with that model throughout, so a swap never mixes two
models in one answer and never fails a request.

The registry is read through ``pipeline.registry.store.reader_tracking_uri``: with the embedded server, its
``mlflow`` database as the read-only role ``movierec_reader``, so the server holds no privileged connection.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from pipeline.core.errors import one_line
from pipeline.core.settings import Settings
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.hybrid.new_movies import NewMovieScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One loaded champion with everything precomputed for serving."""

    model: PublishedBlend
    version: int
    scorer: NewMovieScorer
    loaded_at: datetime
    # id -> model index as plain dicts: a lookup on the event loop must not call into numpy, which releases
    # the GIL for a search and may then wait for the scoring thread to hand it back.
    user_index: dict[int, int]
    movie_index: dict[int, int]

    @classmethod
    def prepare(cls, model: PublishedBlend, version: int) -> ServedModel:
        scorer = NewMovieScorer(model.network)  # user and catalogue vectors, computed once
        model.predict_index(np.zeros(1, np.int64), np.zeros(1, np.int64))  # warm the rating path
        net = model.network
        return cls(
            model,
            version,
            scorer,
            datetime.now(UTC),
            {int(u): k for k, u in enumerate(net.user_map.ids)},
            {int(m): k for k, m in enumerate(net.item_map.ids)},
        )


class Champion:
    """Holds the served model; ``refresh`` swaps in a newer champion when the registry has one."""

    def __init__(self, settings: Settings, device: str = "cpu") -> None:
        self.settings = settings
        self.device = device
        self._registry: Settings | None = None  # settings with the read-only registry URI, on first refresh
        self.current: ServedModel | None = None
        self.last_check: datetime | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one refresh at a time

    def refresh(self) -> bool:
        """Ask the registry which version is champion; load and swap it in if it is not the one served.

        Returns whether the served model changed. Never raises: a failure is logged, kept in
        ``last_error`` (``/health`` shows it) and the current model goes on serving.
        """
        from pipeline.registry.champion import champion_version, load_champion
        from pipeline.registry.store import reader_settings

        with self._lock:
            try:
                if self._registry is None:
                    self._registry = reader_settings(self.settings)
                version = champion_version(self._registry)
                self.last_check = datetime.now(UTC)
                if version is None:
                    self.last_error = "no movierec-hybrid@champion in the MLflow registry yet"
                    return False
                if self.current is not None and self.current.version == version:
                    self.last_error = None
                    return False
                model, loaded = load_champion(self._registry, device=self.device)
                served = ServedModel.prepare(model, loaded)
            except Exception as exc:  # keep serving what we have; say why in /health
                self.last_check = datetime.now(UTC)
                self.last_error = one_line(exc)
                log.warning("champion check failed: %s", self.last_error)
                return False
            previous = self.current.version if self.current else None
            self.current = served  # the swap: one reference assignment
            self.last_error = None
            log.info("serving movierec-hybrid v%s (was %s)", served.version, previous or "none")
            return True
