"""``movierec db migrate`` and ``movierec ingest`` as users and DAG tasks run them: real processes, the test's
own database."""

import pytest
from sqlalchemy import text

from tests.support.cli import movierec
from tests.support.movielens_files import write_ml100k

pytestmark = pytest.mark.e2e


def test_migrate_then_ingest_source_and_summary(cli_env, engine, tmp_path):
    assert movierec(cli_env, "db", "migrate").returncode == 0
    done = movierec(cli_env, "ingest", "--source", str(write_ml100k(tmp_path / "d")))
    assert done.returncode == 0, done.stderr
    assert "5 ratings by 3 users of 4 movies" in " ".join(done.stdout.split())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ratings")).scalar_one() == 5
    again = movierec(cli_env, "ingest", "--source", str(tmp_path / "d"))
    assert again.returncode == 0
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM ingest_runs WHERE status = 'succeeded'")).scalar_one()
            == 2
        )


def test_unusable_input_exits_nonzero_with_one_line_reason(cli_env, tmp_path):
    done = movierec(cli_env, "ingest", "--source", str(tmp_path / "missing"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: no such directory: {tmp_path / 'missing'}"]
    empty = write_ml100k(tmp_path / "empty")
    (empty / "u.data").write_text("")
    done = movierec(cli_env, "ingest", "--source", str(empty))
    assert done.returncode == 1 and done.stderr.strip().endswith("u.data is empty")
    assert "Traceback" not in done.stderr


def test_exactly_one_source_is_required(cli_env):
    done = movierec(cli_env, "ingest")
    assert done.returncode == 2 and "exactly one of --dataset NAME or --source DIR" in done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("recommend", "--top-n", "0"), "Usage: movierec recommend"),
        (("recommend", "--top-n", "ten"), "Invalid value for '--top-n'"),
        (("recommend", "--bogus"), "No such option: --bogus"),
        (("recommend-all",), "No such command 'recommend-all'"),
        (("train", "--as-of", "yesterday"), "Invalid value for '--as-of': 'yesterday' is not an ISO date"),
        (("airflow", "run-weekly", "--logical-date", "soon"), "Invalid value for '--logical-date'"),
        # The DAG's params refuse these too, but only once Airflow has started and created a run.
        (
            ("airflow", "run-weekly", "--dataset", "ml-7"),
            "Invalid value for '--dataset': unknown dataset 'ml-7'",
        ),
        (("airflow", "run-weekly", "--device", "gpu"), "Invalid value for '--device'"),
        (("airflow", "run-weekly", "--source", "/no/such/dir"), "Invalid value for '--source'"),
        (("airflow", "run-weekly", "--dataset", "ml-1m", "--source", "."), "give at most one of --dataset"),
        (("run", "--dataset", "ml-7"), "Invalid value for '--dataset': unknown dataset 'ml-7'"),
    ],
)
def test_a_usage_error_names_the_option(cli_env, args, said):
    """Typer parses with a click of its own: its errors are shown as the commands' own usage errors are (exit
    2, ``Error:`` and the option at fault; the usage line where the parser raised it), never as an unexpected
    failure's one line."""
    done = movierec(cli_env, *args)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "\nError: " in f"\n{done.stderr}", done.stderr


def test_unknown_dataset_is_named_in_the_error(cli_env):
    done = movierec(cli_env, "ingest", "--dataset", "ml-7")
    assert done.returncode == 2 and "ml-7" in done.stderr and "ml-100k" in done.stderr
