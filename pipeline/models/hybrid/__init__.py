"""The hybrid content + collaborative network: ``config`` (``HybridConfig``), ``network`` (``HybridNet``,
``ContentEncoder``, ``UserHistory``, ``build_network``), ``train`` (``train_hybrid``: in this process,
``fit``, or in several, ``distributed``; ``TrainingResult``), ``artifact`` (``HybridArtifact``),
``recommender`` (``HybridRecommender``), ``new_movies`` (``NewMovie``, ``NewMovieScorer``). ``train``,
``fit``, ``distributed`` and ``recommender`` are training code: the API never imports them."""
