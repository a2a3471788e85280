import pytest

from pipeline.ingest.titles import normalise_title, split_title_year, title_keys, title_variants


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Toy Story (1995)", ("Toy Story", 1995)),
        ("Babylon 5 ", ("Babylon 5", None)),
        ("Fawlty Towers (1975-1979)", ("Fawlty Towers", 1975)),
        ("unknown", ("unknown", None)),
    ],
)
def test_split_title_year(raw, expected):
    assert split_title_year(raw) == expected


def test_normalise_moves_article_and_drops_accents():
    assert normalise_title("Usual Suspects, The") == "the usual suspects"
    assert normalise_title("Misérables, Les") == normalise_title("Les Miserables")


def test_title_variants_include_alternative_name():
    assert title_variants("Shanghai Triad (Yao a yao yao dao waipo qiao)") == [
        "Shanghai Triad",
        "Yao a yao yao dao waipo qiao",
    ]


def test_title_keys_cover_whole_title_and_alternative_name():
    keys = title_keys("Shanghai Triad (Yao a yao yao dao waipo qiao)")
    assert {"shanghai triad", "yao a yao yao dao waipo qiao"} <= keys
    assert title_keys("Usual Suspects, The") == {"the usual suspects"}
    assert title_keys("???") == set()
