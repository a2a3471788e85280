"""The weekly lists: ``scoring`` (``score_chunk``: top-N by the published blend, retrieve then re-rank),
``publish`` (``publish_batch``, ``ListWriter``, ``sample_lists``: written with COPY, published in one
transaction), ``shards`` (``prepare_shards``, ``score_shard``, ``publish_shards``: the same pieces, one
transaction per shard, for the DAG's mapped tasks), ``fallback`` (``most_rated``: SQL only, shared with the
API), ``rollback`` (``rollback_batch``: the previous kept batch published again), ``compare``
(``compare_batches``: two kept batches side by side)."""
