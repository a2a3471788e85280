"""The project's defaults and bounds, in one place every entry point shares (CLI, DAG, API, pipeline).

Import-light on purpose: the DAG file imports it at parse time, so nothing here may import more than the
standard library.
"""

from __future__ import annotations

from typing import Final

# --- data ---------------------------------------------------------------------------------------------------
DATASETS: Final = ("ml-100k", "ml-1m", "ml-latest-small", "ml-25m", "ml-32m")
DEFAULT_DATASET: Final = "ml-100k"
MAX_REJECT_SHARE: Final = 0.05  # a run fails when a larger share of the ingested lines is rejected
MIN_RATINGS: Final = 1_000  # fewer ratings in the database: too few to train on

# --- evaluation ---------------------------------------------------------------------------------------------
RELEVANCE_THRESHOLD: Final = 4.0  # a held-out rating at least this high is a relevant movie
PRIMARY_PROTOCOL: Final = "temporal"
PRIMARY_METRIC: Final = "ndcg@10"  # what the promotion gate compares

# --- lists --------------------------------------------------------------------------------------------------
DEFAULT_TOP_N: Final = 100
MAX_TOP_N: Final = 1_000  # one bound for the CLI, the DAG and the batch (the API serves at most 1000)
DEFAULT_CANDIDATES: Final = 500  # movies per user the rating head re-ranks
MAX_CANDIDATES: Final = 100_000
DEFAULT_KEEP: Final = 3  # published batches kept
MIN_HISTORY: Final = 5  # fewer ratings than this: the popularity fallback list

# --- registry -----------------------------------------------------------------------------------------------
REGISTERED_MODEL: Final = "movierec-hybrid"
CHAMPION_ALIAS: Final = "champion"

# --- orchestration ------------------------------------------------------------------------------------------
DAG_ID: Final = "movierec_weekly"
TRAINING_POOL: Final = "movierec_training"
TRAINING_POOL_SLOTS: Final = 1
DEVICES: Final = ("auto", "cpu", "cuda")
