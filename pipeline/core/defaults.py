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
# Bounds on ingested text: a longer value rejects its line (the longest real MovieLens title is under 200).
MAX_TITLE_CHARS: Final = 500
MAX_NAME_CHARS: Final = 300  # a person's name
MAX_LABEL_CHARS: Final = 64  # a genre, an occupation, an external id
MAX_GENRES: Final = 32
# What a rejected line keeps: its raw text cut to this many characters (with a note of its full length),
# its reason and any log or error line about it cut to this many.
MAX_REJECT_RAW_CHARS: Final = 4_096
MAX_REASON_CHARS: Final = 300
# Any error shown as one line (CLI, logs, API answers, /health): long enough for a path and a SQL error.
MAX_ERROR_LINE_CHARS: Final = 500

# --- evaluation ---------------------------------------------------------------------------------------------
RELEVANCE_THRESHOLD: Final = 4.0  # a held-out rating at least this high is a relevant movie
PRIMARY_PROTOCOL: Final = "temporal"
PRIMARY_METRIC: Final = "ndcg@10"  # what the promotion gate compares
# Users with at most this many train ratings are "cold": NDCG@10 over them is reported and guarded apart
# (on ML-100K's temporal split 264 of the 910 evaluated users).
COLD_USER_MAX_RATINGS: Final = 30
# Release guardrails (pipeline.evaluation.guardrails): how far (a share of the incumbent's figure) a new
# model's or list set's figure may fall below the champion's or the published batch's before it is refused.
# Cold users are a third of the evaluated ones: their NDCG moves more between retrains than the whole's.
GUARDRAIL_COVERAGE_MARGIN: Final = 0.15
GUARDRAIL_LONG_TAIL_MARGIN: Final = 0.15
GUARDRAIL_COLD_NDCG_MARGIN: Final = 0.10
GUARDRAIL_SHARE_SLACK: Final = 0.01  # absolute, on the long-tail share: one listed row in a hundred
# The head of the catalogue: the most-rated movies holding this share of the train ratings; a listed movie
# outside it is long tail (``evaluation.list_metrics``).
LONG_TAIL_HEAD_SHARE: Final = 0.8
# The evaluation fits and scores at most this many users (a fixed sample of those with a rating, the same
# for every model and, but for new users, every week; ``evaluation.protocol``; MOVIEREC_EVALUATION_MAX_USERS):
# ML-25M's 162k users would cost 9.6 billion scores per model, and its two network fits about 3.5 hours on a
# 2-core CPU, while the sample's NDCG@10 has a standard error of about 0.0013 (one user's NDCG@10 varies with
# a standard deviation near 0.18 on ML-100K, ALS's lists). ML-100K's 943 and ML-1M's 6,040 are far below.
EVALUATION_MAX_USERS: Final = 20_000
# Evaluation-only models (``pipeline.evaluation.benchmark.EVALUATION_ONLY``): reported beside the published
# blend's members and the baselines, never published. ``movierec evaluate`` runs them all.
EVALUATION_ONLY_MODELS: Final = ("als", "autorec", "bpr", "lmf", "item_knn", "lightgcn", "neumf", "sasrec")
# Those the weekly run's evaluation reports too (and logs to MLflow); MOVIEREC_WEEKLY_MODELS overrides it.
# ALS and item-kNN: cheap (on ML-100K they add about 3 s to the temporal evaluation) and growing with the
# ratings as EASE and biased MF do; BPR's, LMF's, LightGCN's, NeuMF's and SASRec's single-threaded epochs cost
# more at real size and pay nothing in what is published, so they stay in `movierec evaluate`.
WEEKLY_EVALUATION_MODELS: Final = ("als", "item_knn")
# Models the blend's weight search may give a share of the ranking beside the network, ALS and EASE
# (``pipeline.models.blend.members``; MOVIEREC_BLEND_MEMBERS overrides it, "" for none). SASRec: on ML-100K's
# temporal validation split the blend with it ranks at NDCG@10 0.1945 against 0.1649 without, and on the
# test split 0.214 against 0.196 (0.218 since its loss draws four negatives per target; bench/README.md,
# "Model quality"), for two more SASRec fits a week.
BLEND_MEMBERS: Final = ("sasrec",)
BLEND_MEMBER_MODELS: Final = ("sasrec", "lightgcn", "bpr", "lmf")  # those that can be (one vector per user)
# Above this many ratings the members are not offered (MOVIEREC_BLEND_MEMBERS_MAX_RATINGS): SASRec's
# single-threaded fits grow with the ratings. On a 2-core CPU one of its epochs takes about 1 s at ML-100K
# and 17 s at ML-1M's shape (synthetic), so a weekly run's three fits (validation, protocol, final) would add
# about 6 minutes at ML-1M and hours at ML-25M, where the weekly time targets have no room for them.
BLEND_MEMBERS_MAX_RATINGS: Final = 500_000
# Up to this many ratings in a protocol's train split the evaluation's weight search runs in a side thread
# beside that protocol's network (pipeline.core.device.side_thread): both hold their data in memory at once.
# ML-1M's 800k are under it; above it (ML-25M's evaluation sample: some 2.4M), where the evaluate step's
# peak RSS was measured with them in turn (9.1 GiB against the 12 GB target), they stay in turn.
SEARCH_BESIDE_NETWORK_MAX_RATINGS: Final = 1_500_000
# AutoRec (pipeline.models.autorec) joins the rating blend up to this many users x movies: its encoder has a
# weight per user per hidden unit and each pass multiplies every movie's full rating vector. ML-100K (1.6M
# cells) fits in about 2 s on a 2-core CPU and takes the blend's RMSE from 0.889 to 0.877; ML-1M shape (22M
# cells) would cost about 14 times that per fit (MOVIEREC_AUTOREC_MAX_CELLS).
AUTOREC_MAX_CELLS: Final = 5_000_000

# Warm start (pipeline.models.hybrid.warm_start): the week's network starts from the champion's and trains
# this many epochs (no early stopping); a full retrain from scratch once the chain's last full training is
# this many weeks old (MOVIEREC_WARM_START_EPOCHS, MOVIEREC_FULL_RETRAIN_WEEKS; the DAG's full_retrain param
# forces one).
WARM_START_EPOCHS: Final = 5
WARM_START_MAX_AGE_WEEKS: Final = 4
# A warm-start epoch trains on at most this many ratings: every one after the champion's cut-off and a fresh
# sample of the older ones to fill it (MOVIEREC_WARM_START_EPOCH_RATINGS). ML-1M and smaller train on every
# rating; at ML-25M shape a week of 4% new ratings and a quarter of the rest (bench/warm_start).
WARM_START_EPOCH_RATINGS: Final = 7_000_000

# --- lists --------------------------------------------------------------------------------------------------
DEFAULT_TOP_N: Final = 100
MAX_TOP_N: Final = 1_000  # one bound for the CLI, the DAG and the batch (the API serves at most 1000)
DEFAULT_CANDIDATES: Final = 500  # movies per user the rating head re-ranks
MAX_CANDIDATES: Final = 100_000
DEFAULT_KEEP: Final = 3  # published batches kept
# The diversity re-rank (``models.rerank``): MMR strength in [0, 1] over content similarity, and the
# popularity penalty (standard deviations of a user's scores per standard deviation of log-popularity); 0 and
# 0: the ranking as it is. Chosen on ML-100K's validation split (README, "Diversity").
DEFAULT_DIVERSITY: Final = 0.0
DEFAULT_POPULARITY_PENALTY: Final = 0.0
MAX_POPULARITY_PENALTY: Final = 5.0
# A new user's fold-in (pipeline.models.foldin): the popularity prior counts as this many ratings (its
# weight c / (c + n) for n given). The best of bench.foldin's grid by NDCG@10 on held-out validation users
# (its edge: the grid stops there so that a user with 100 ratings is still two-thirds their own).
FOLDIN_POPULARITY_PRIOR: Final = 50.0
DIVERSITY_POOL: Final = 500  # each user's top movies by the ranking the re-rank chooses from
# Strengths of the weekly run's trade-off table on the validation split (NDCG@10 beside the list figures).
TRADEOFF_STRENGTHS: Final = (0.0, 0.25, 0.5, 0.75)
TRADEOFF_PENALTIES: Final = (0.25, 0.5, 1.0)  # and popularity penalties, at strength 0
MIN_HISTORY: Final = 5  # fewer ratings than this: the popularity fallback list
# Sharded scoring (the weekly DAG's score_shard tasks): users per shard when the DAG's shards param is left
# empty (ML-100K and ML-1M: one shard; ML-32M's 200,948 users: five), and the most shards of one batch.
SHARD_USERS: Final = 50_000
MAX_SHARDS: Final = 64

# --- registry -----------------------------------------------------------------------------------------------
REGISTERED_MODEL: Final = "movierec-hybrid"
CHAMPION_ALIAS: Final = "champion"

# --- database roles and locks -------------------------------------------------------------------------------
# How long a publish or a promotion waits for its pipeline lock (a row of ``pipeline_locks``), and for any
# table or row lock after it in the same transaction, before it fails naming the lock. The publish lock is
# held for a whole publication, scoring included: the largest measured (ML-32M shape, all 200,948 users) took
# 13.7 minutes, so a publication queued behind it still gets its turn; a holder that never lets go fails the
# waiter instead of hanging it. Override with MOVIEREC_LOCK_TIMEOUT_S.
LOCK_TIMEOUT_S: Final = 900.0
# Session defaults of the read-only role movierec_reader (set where the role is set up: the embedded server,
# the stack's init script). The API's longest query is the fallback list at a batch's cut-off (a scan of
# ``ratings``, once per batch); its others have a 5 s client-side timeout.
READER_STATEMENT_TIMEOUT_S: Final = 60
READER_IDLE_IN_TRANSACTION_TIMEOUT_S: Final = 60

# --- orchestration ------------------------------------------------------------------------------------------
DAG_ID: Final = "movierec_weekly"
TRAINING_POOL: Final = "movierec_training"
TRAINING_POOL_SLOTS: Final = 1
# The KubernetesExecutor's pod template for the tasks that train (deploy/kubernetes/pod-template-train.yaml,
# one GPU; mounted in the scheduler by deploy/kubernetes/values.yaml); other executors ignore it.
TRAIN_POD_TEMPLATE: Final = "/opt/movierec/pod-templates/pod-template-train.yaml"
DEVICES: Final = ("auto", "cpu", "cuda")

# --- privacy ------------------------------------------------------------------------------------------------
# Usage telemetry off in every process that imports the pipeline (CLI, DAG tasks, API, tests) and in what
# they start: MLflow reports usage from `import mlflow` on unless one of these is set; Scarf-based reporting
# (Airflow 2.10+'s usage data) honours the last two. Set before MLflow is imported (``pipeline/__init__``);
# a value the user set wins (``setdefault``). The Docker stack sets the same variables in docker-compose.yml.
TELEMETRY_OPT_OUTS: Final = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "SCARF_ANALYTICS": "false",
}

# Intel MKL (torch's CPU matrix products) may split a product's inner dimension across threads, so the order
# of its sums, and their last bits, changed with the thread count on AVX-512 CPUs: a network that steps on one
# thread while a side fit runs (``pipeline.core.device.cores_beside_side_fits``) trained to other floats than
# on two. MKL's strict conditional numerical reproducibility fixes that order whatever the thread count. MKL
# reads it at its first call, so it is set with the telemetry opt-outs at ``import pipeline``; a value the
# user set wins.
REPRODUCIBLE_MATH: Final = {"MKL_CBWR": "AUTO,STRICT"}
