"""Running the weekly flow: ``steps`` (one function per DAG task — ``fetch``, ``ingest``, ``quality``,
``evaluate``, ``train``, ``promote``, ``publish``, ``report`` — plus ``train_steps`` and ``run_all`` for the
CLI), ``airflow_local`` (Airflow on this machine without Docker: environment, metadata, ``run_dag``,
``run_standalone``)."""
