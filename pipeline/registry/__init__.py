"""MLflow tracking and the model registry.

- ``store``: ``tracking_uri``, ``configure_mlflow``, ``mlflow_client``, ``metric_key``, ``flatten_metrics`` —
  where MLflow is and how things are named there.
- ``tracking``: ``log_training_run``, ``RunInfo``.
- ``plots``: ``learning_curve``, ``evaluation_chart``.
- ``report``: ``evaluation_headers``, ``evaluation_rows``, ``blend_line`` — a run's evaluation report as
  text, for the CLI and the web UI.
- ``pyfunc``: ``HybridPyfunc``, ``predict_ratings``.
- ``gate``: ``promote_if_better``, ``PromotionDecision`` — the promotion gate.
- ``champion``: ``champion_version``, ``load_champion`` — what the API imports.
"""
