"""Model inputs: ratings as dense-index arrays, movie and user features, text embeddings.

- ``interactions``: ``Interactions`` (``matrix``, ``binary_matrix``), ``IdMap``, ``build_interactions``.
- ``vocab``: ``FeatureVocab``, ``MovieContent``, ``ROLES``, ``MAX_PEOPLE`` and the featurisers — pure, no SQL;
  the API featurises a new movie with them exactly as training did.
- ``loading``: ``TrainingData``, ``load_training_data`` — the PostgreSQL reader, as of a cut-off.
- ``text_embeddings``: ``encode``, ``embed_texts`` — MiniLM from the packaged model, cached in PostgreSQL.
"""
