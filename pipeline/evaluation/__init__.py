"""Offline evaluation under fixed protocols, every model on the same splits.

- ``splits``: ``PROTOCOLS``, ``make_split``, ``random_split``, ``temporal_split``.
- ``metrics``: ``rmse``, ``mae``, ``hits_at_k``, ``ranking_metrics_from_hits`` and the per-list metrics.
- ``list_metrics``: ``list_set_metrics`` (coverage, intra-list diversity, novelty, long tail, Gini).
- ``protocol``: ``evaluate_model``, ``run_evaluation``, ``top_k_for_users``.
- ``report``: ``EvaluationReport``.
- ``cold_start``: the item cold-start check.
- ``weight_search``: ``choose_weights`` — the blend's weights on validation data.
- ``benchmark``: ``evaluate_all``, ``EvaluationOutcome``, ``published_metrics``, ``write_report``,
  ``EVALUATION_ONLY`` (the evaluation-only models by report name).
- ``validation_chain``: ``start_validation``, ``held_out_seen`` — the validation network warm-started from
  the champion's evaluation's.
"""
