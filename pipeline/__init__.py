"""movierec's pipeline: the work itself, importable and testable without Airflow."""
