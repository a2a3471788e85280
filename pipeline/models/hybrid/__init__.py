"""The hybrid content + collaborative network: ``config`` (``HybridConfig``), ``network`` (``HybridNet``,
``ContentEncoder``, ``UserHistory``, ``build_network``), ``fit`` (``train_hybrid``, ``TrainingResult``),
``artifact`` (``HybridArtifact``), ``recommender`` (``HybridRecommender``), ``new_movies`` (``NewMovie``,
``NewMovieScorer``). ``fit`` and ``recommender`` are training code: the API never imports them."""
