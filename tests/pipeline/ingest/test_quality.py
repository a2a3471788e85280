"""The data-quality rule a run must pass before anything trains (``pipeline.ingest.quality``)."""

import pytest

from pipeline.core.errors import DataQualityError
from pipeline.ingest.loader import ingest_directory
from pipeline.ingest.quality import check_data_quality
from tests.support.movielens_files import write_ml100k


@pytest.fixture
def ingested(engine, tmp_path):
    return ingest_directory(engine, write_ml100k(tmp_path / "d"), dataset="ml-100k", progress=False)


def test_the_figures_checked_when_the_data_passes(engine, ingested):
    report = check_data_quality(engine, ingested.ingest_run_id, 95, 5, max_reject_share=0.05, min_ratings=5)
    assert report == {
        "rejected_share": 0.05,
        "rows_rejected": 5,
        "ratings": 5,
        "users": 3,
        "max_reject_share": 0.05,
    }


def test_too_many_rejected_rows_fail_with_the_share_and_where_to_look(engine, ingested):
    with pytest.raises(
        DataQualityError, match=r"6 of 100 input rows rejected \(6.0% > 5.0%\).*ingest_run_id = "
    ):
        check_data_quality(engine, ingested.ingest_run_id, 94, 6, max_reject_share=0.05, min_ratings=5)


def test_too_few_ratings_fail(engine, ingested):
    with pytest.raises(DataQualityError, match="only 5 ratings in the database .* too few to train on"):
        check_data_quality(engine, ingested.ingest_run_id, 5, 0)  # the default minimum: 1,000
