"""The published blend: ``weights`` (``BlendWeights``), ``scorer`` (``BlendRecommender``, ``rating_scale``),
``published`` (``PublishedBlend``: what MLflow registers, the batch scores and the API serves), ``fit``
(``train_published``; training code, never imported by the API)."""
