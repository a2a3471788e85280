"""Every model behind one contract.

- ``base``: ``Scorer``, ``Recommender`` (a Scorer that fits), ``RatingMatrix`` (a capability),
  ``NotFitted``.
- ``baselines``: ``GlobalMean``, ``Popularity``, ``BiasedMF``, ``EASE`` and their configs.
- ``implicit_mf``: ``ALS``, ``BPR``, ``LMF`` — implicit-feedback factorisation through the ``implicit``
  library — and their configs; ``item_knn``: ``ItemKNN`` (shrunk co-rating cosine); both evaluation-only.
- ``saved``: one ``.npz`` per fitted model (``save_arrays``, ``load_arrays``), for those two.
- ``topn``: ``top_k`` (one tie rule for evaluation and batch), ``mask_rows``, ``retrieve_and_rerank``,
  ``scatter_rows``.
- ``hybrid``: the content + collaborative network — ``config.HybridConfig``, ``network.HybridNet`` (the
  ``nn.Module``), ``train.train_hybrid``, ``artifact.HybridArtifact`` (trained network, id maps, vocabulary,
  catalogue content; scores by index; save/load), ``recommender.HybridRecommender`` (the Recommender whose
  ``fit`` trains), ``new_movies.NewMovieScorer``.
- ``blend``: what is published — ``weights.BlendWeights``, ``scorer.BlendRecommender``,
  ``published.PublishedBlend`` (the registered artefact), ``fit.train_published``.
"""
