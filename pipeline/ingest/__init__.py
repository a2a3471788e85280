"""Data in: MovieLens and IMDb files into PostgreSQL, validated, idempotent, bad lines kept.

- ``datasets``: ``fetch_dataset``, ``fetch_offline_ml100k``, ``get_spec`` — named datasets, checksummed;
  ``unpacked_archive`` — a dataset's zip archive, extracted for one ingest.
- ``layouts``: ``detect_layout``, ``parse_movies``, ``parse_users``, ``parse_credits``, ``parse_links`` — the
  GroupLens and RecBole file layouts; ``check_encoding`` — the encoding a file is really in.
- ``titles``: ``split_title_year``, ``normalise_title``, ``title_keys`` — titles as MovieLens writes them.
- ``loader``: ``ingest_directory``, ``IngestResult`` — one ingest, one data transaction, a run recorded
  whatever happens; ``record_failed_ingest`` — a run that failed before it could read anything.
- ``imdb``: ``enrich_from_imdb`` — IMDb's TSV dumps, streamed.
- ``rejects``: ``record_rejects``, ``RejectSpool`` — every rejected line with its reason, bounded, kept
  when the data is rolled back.
- ``quality``: ``check_data_quality``, ``QualityReport`` — the rule a run must pass before training.
- ``summary``: ``database_summary`` — counts and facts for people and logs.
"""
