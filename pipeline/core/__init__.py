"""What every layer may use; standard library, pydantic and torch only (``defaults`` is standard library only,
so the DAG file can import it at parse time).

- ``settings``: ``Settings``, ``get_settings`` — the one settings object, from the environment.
- ``errors``: ``MovierecError``, ``InputError``, ``SourceUnavailable``, ``DataQualityError``, ``one_line``.
- ``defaults``: dataset names, list bounds, candidates, relevance threshold, DAG id, pool, registered model
  name and alias, primary protocol and metric.
- ``dates``: ``parse_as_of`` — the one parser of cut-offs and logical dates.
- ``device``: ``resolve_device`` — auto/cpu/cuda.
- ``jsonsafe``: ``json_safe``, ``json_text`` — plain JSON for jsonb, XCom and reports.
"""
