"""The web UI (``/ui/``) in a real browser against the live server over the weekly run's lists, plus plain HTTP
checks of its 404 pages, its degraded (503) pages and the runs page's plots (read from the champion's MLflow
run; only the allowed plot names).

The browser is Debian's Chromium (``/usr/bin/chromium``) driven by Python Playwright through
``executable_path``: Playwright's own ``playwright install`` downloads browsers from a CDN, which CI and
development machines may not reach, and the system browser needs no driver binary of its own (as
selenium's chromedriver would). Without that browser, or without the ``playwright`` package, the browser
tests skip with a one-line reason. Every page's screenshot is saved under the test's ``tmp_path``; the
browser may reach the server only (any other request fails the test: no CDN, nothing fetched elsewhere).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from model_server.app import create_app
from pipeline.core.defaults import CHAMPION_ALIAS, REGISTERED_MODEL
from pipeline.registry.store import tracking_uri

pytestmark = pytest.mark.e2e  # a live server over the weekly run's lists, a browser on it

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ("/ui/", "/ui/users/3", "/ui/movies/50", "/ui/new-movie", "/ui/runs")


@pytest.fixture(scope="module")
def db(published):
    engine = create_engine(sqlalchemy_url(published.settings.database_url))
    yield engine
    engine.dispose()


def _sql(engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query), params))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no browser driver: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_api) -> Iterator[Any]:
    """A fresh browser page that may load only from the live server; anything else is recorded and refused."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    elsewhere: list[str] = []
    server = urlsplit(live_api.url).netloc

    def only_the_server(route: Any) -> None:
        if urlsplit(route.request.url).netloc == server:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    failed: list[str] = []
    # net::ERR_ABORTED is the browser cancelling a request itself as the page is left: the favicon, fetched after
    # the load event, is aborted by a click that navigates away at once. A server failing a request (refused,
    # reset) is another error, and a security policy's refusal shows among the console errors.
    page.on("requestfailed", lambda r: failed.append(r.url) if r.failure != "net::ERR_ABORTED" else None)
    console_errors: list[str] = []  # a resource the page's security policy refused shows here
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    yield page
    # Requests a page starts after its load event (a test may end right after a navigation) would be aborted
    # by closing the context and counted as failed: let them finish first.
    from playwright.sync_api import TimeoutError as PageTimeout  # the browser fixture made sure it is there

    try:
        page.wait_for_load_state("networkidle", timeout=15_000)
    except PageTimeout:  # a page that never goes idle: its open requests are reported below
        pass
    context.close()
    assert elsewhere == [], f"the page fetched from another host: {elsewhere}"
    assert dialogs == [], f"a script ran: {dialogs}"  # nothing of the data is ever executed
    assert failed == [], f"requests failed: {failed}"
    assert [e for e in console_errors if "status of 422" not in e] == []  # the invalid form's answer


def _open(page, live_api, path: str, tmp_path: Path, name: str) -> Any:
    response = page.goto(live_api.url + path)
    assert response is not None and response.status == 200, (path, response and response.status)
    _accessible(page)
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    return response


def _accessible(page) -> None:
    """The structure assistive technology relies on: language, landmarks, labels, headers, alt text."""
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("main").count() == 1 and page.locator("nav").count() >= 1
    assert page.locator("h1").count() == 1
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select')]
                 .filter(e => e.type !== 'hidden' && e.labels.length === 0).map(e => e.name)"""
    )
    assert unlabelled == []
    assert page.evaluate("() => [...document.images].filter(i => !i.alt).length") == 0
    for table in page.locator("table").all():
        assert table.locator("thead th[scope=col]").count() >= 2 and table.locator("caption").count() == 1
    # the stylesheet loaded (served by the server itself), so the contrast chosen there applies
    assert page.evaluate("() => getComputedStyle(document.body).color") == "rgb(26, 26, 26)"


def _cells(page, table: str) -> list[list[str]]:
    return page.locator(f"{table} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )


def test_home_page_shows_the_status_and_jumps_to_a_user(page, live_api, published, tmp_path):
    _open(page, live_api, "/ui/", tmp_path, "home")
    batch_id = published.results["publication"]["batch_id"]
    status = page.locator("dl.facts").inner_text()
    assert f"{batch_id}, top " in status and "movierec-hybrid v1" in status
    assert page.locator("a[href^='/ui/users/']").count() >= 1
    page.get_by_label("User id").fill("7")
    page.get_by_role("button", name="Show user").click()
    page.wait_for_url(re.compile(r"/ui/users/7$"))
    assert page.locator("h1").inner_text() == "User 7"
    page.goto(live_api.url + "/ui/")
    page.get_by_label("Movie id").fill("50")
    page.get_by_role("button", name="Show movie").click()
    page.wait_for_url(re.compile(r"/ui/movies/50$"))


def test_user_page_shows_the_published_list_history_and_ratings(page, live_api, db, published, tmp_path):
    _open(page, live_api, "/ui/users/7", tmp_path, "user")
    expected = _sql(
        db,
        "SELECT rank, movie_id, title, year, genres, score, source, batch_id, model_version, reason "
        "FROM current_recommendations WHERE user_id = 7 ORDER BY rank LIMIT 20",
    )
    assert len(expected) == 20
    shown = page.locator("#recommendations tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.movieId, ...[...r.cells].map(c => c.innerText.trim())])"
    )
    assert [(int(s[0]), int(s[1]), s[2], s[4]) for s in shown] == [
        (r.movie_id, r.rank, r.title, ", ".join(r.genres)) for r in expected
    ]
    assert [float(s[5]) for s in shown] == pytest.approx([r.score for r in expected], abs=5e-4)
    assert [s[6] for s in shown] == [r.reason for r in expected] and expected[0].reason  # why, as stored
    assert page.locator("#list-source").inner_text().startswith(expected[0].source)
    # the history: the published batch, the whole list still in it
    history = _cells(page, "#history")
    batch_id = published.results["publication"]["batch_id"]
    assert [batch_id, "published", "v1"] == [int(history[0][0]), history[0][1], history[0][3]]
    list_length = _sql(db, "SELECT count(*) FROM current_recommendations WHERE user_id = 7")[0][0]
    assert int(history[0][5]) == int(history[0][6]) == list_length
    # what they rated: titles and times, never the values
    rated = _sql(db, "SELECT count(*) FROM ratings WHERE user_id = 7")[0][0]
    assert f"Rated {rated} movies" in page.locator("#rated-h + p").inner_text()
    latest = _sql(
        db,
        "SELECT m.title FROM ratings r JOIN movies m USING (movie_id) WHERE r.user_id = 7 "
        "ORDER BY r.rated_at DESC, r.movie_id LIMIT 1",
    )[0][0]
    assert _cells(page, "#rated")[0][0] == latest
    # a title links to its movie page
    page.locator("#recommendations tbody tr a").first.click()
    page.wait_for_url(re.compile(rf"/ui/movies/{expected[0].movie_id}$"))


def test_movie_page_shows_similar_movies_audience_and_rating_history(page, live_api, db, tmp_path):
    movie_id, title = _sql(
        db,
        "SELECT movie_id, title FROM current_recommendations GROUP BY movie_id, title "
        "ORDER BY count(*) DESC, movie_id LIMIT 1",
    )[0]
    _open(page, live_api, f"/ui/movies/{movie_id}", tmp_path, "movie")
    assert page.locator("h1").inner_text().startswith(title)
    similar = httpx.get(f"{live_api.url}/movies/{movie_id}/similar", params={"limit": 10}).json()
    assert [row[0] for row in _cells(page, "#similar")] == [i["title"] for i in similar["items"]]
    audience = _sql(
        db,
        "SELECT user_id, rank FROM current_recommendations WHERE movie_id = :m ORDER BY rank, user_id",
        m=movie_id,
    )
    assert f"In the lists of {len(audience)} user" in page.locator("#audience-total").inner_text()
    shown = _cells(page, "#audience")
    assert [(r[0], int(r[1])) for r in shown] == [(f"User {u}", k) for u, k in audience[: len(shown)]]
    months = _cells(page, "#ratings-per-month")
    ratings = _sql(db, "SELECT count(*) FROM ratings WHERE movie_id = :m", m=movie_id)[0][0]
    assert sum(int(m[1]) for m in months) == ratings > 0
    assert all(re.fullmatch(r"\d{4}-\d{2}", m[0]) for m in months)


def test_new_movie_form_returns_the_apis_audience(page, live_api, tmp_path):
    _open(page, live_api, "/ui/new-movie", tmp_path, "new-movie-form")
    page.get_by_label("Title").fill("The Quiet Orbit <script>alert(1)</script>")
    page.get_by_label("Drama", exact=True).check()
    page.get_by_label("Sci-Fi", exact=True).check()
    page.get_by_label("Year").fill("1997")
    page.get_by_label("Actors").fill("Nobody Known Here")
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#result")
    page.screenshot(path=str(tmp_path / "new-movie.png"), full_page=True)
    # the data is text, never markup
    assert "<script>alert(1)</script>" in page.locator("#result-h").inner_text()
    shown = _cells(page, "#audience")
    assert len(shown) == 10
    assert "Nobody Known Here" in page.locator("#result dl").inner_text()  # listed as ignored
    body = {"title": "The Quiet Orbit <script>alert(1)</script>", "genres": ["Drama", "Sci-Fi"], "year": 1997}
    with httpx.Client(base_url=live_api.url, timeout=60) as api:
        for user, rating in shown[:3]:  # each shown user's rating is the API's for that user
            user_id = int(user.removeprefix("User "))
            answer = api.post("/predict/new-movie", json={**body, "user_id": user_id}).json()
            assert float(rating) == pytest.approx(answer["predicted_rating"], abs=0.01)
    # with a user: that user's predicted rating
    page.get_by_label("User id").fill("7")
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#predicted-rating")
    assert re.search(r"User 7's predicted rating: \d\.\d\d", page.locator("#predicted-rating").inner_text())


def test_new_movie_form_names_what_is_wrong(page, live_api):
    response = page.goto(live_api.url + "/ui/new-movie")
    page.get_by_label("Title").fill("Untitled")
    page.get_by_label("Year").fill("12")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Predict").click()
    assert response is not None and posted.value.status == 422
    errors = page.locator("#form-errors").inner_text()
    assert "genres" in errors and "year" in errors
    assert page.get_by_label("Title").input_value() == "Untitled"  # what was typed is kept


def test_runs_page_lists_the_batch_the_gate_and_the_champions_evaluation(
    page, live_api, db, published, tmp_path
):
    _open(page, live_api, "/ui/runs", tmp_path, "runs")
    batch_id = published.results["publication"]["batch_id"]
    row = page.locator(f"#batches tr[data-batch-id='{batch_id}']")
    assert row.count() == 1
    cells = _cells(page, "#batches")[0]
    users, coverage = _sql(
        db,
        "SELECT users, catalogue_coverage FROM recommendation_batch_summary WHERE batch_id = :b",
        b=batch_id,
    )[0]
    assert (
        cells[1] == "published"
        and int(cells[5]) == users
        and float(cells[9]) == pytest.approx(float(coverage))
    )
    versions = _cells(page, "#versions")
    status, decision = _sql(db, "SELECT status, decision FROM model_versions WHERE registered_version = 1")[0]
    assert (
        versions[-1][0] == "movierec-hybrid v1" and versions[-1][1] == status and versions[-1][7] == decision
    )
    assert f"One batch kept ({batch_id})" in page.locator("#churn").inner_text()

    # The champion's evaluation: the published blend's NDCG@10 is the figure of its run's evaluation.json.
    report = _champion_report(published)
    assert "v1 (the champion)" in page.locator("#evaluation-h").inner_text()
    headers = page.locator("#evaluation thead th").all_inner_texts()
    blend = page.locator("#evaluation tr[data-protocol='temporal'][data-model='blend'] td").all_inner_texts()
    assert blend[headers.index("NDCG@10")] == f"{report['results']['temporal']['blend']['ndcg@10']:.4f}"
    assert len(_cells(page, "#evaluation")) == sum(len(models) for models in report["results"].values())
    assert f"ranking: network x {report['blend_weight']:.2f}" in page.locator("#blend-weights").inner_text()
    # both plots loaded as images (the page's policy allows images from the server itself only)
    plots = page.locator("img.plot").evaluate_all(
        "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])"
    )
    assert [src for src, _ in plots] == [
        "/ui/runs/1/plots/evaluation.png",
        "/ui/runs/1/plots/learning_curve.png",
    ]
    assert all(width > 0 for _, width in plots), plots
    # a version in the table links to its evaluation
    page.get_by_role("link", name="movierec-hybrid v1").click()
    page.wait_for_url(re.compile(r"/ui/runs\?version=1#evaluation-h$"))
    assert "v1" in page.locator("#evaluation-h").inner_text()


def _champion_report(published) -> dict[str, Any]:
    """The evaluation.json logged with the champion's training run, read from the fixture's MLflow store."""
    uri = tracking_uri(published.settings)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).run_id
    [report] = [f.path for f in client.list_artifacts(run_id, "evaluation.json") if f.path.endswith(".json")]
    return json.loads(Path(client.download_artifacts(run_id, report)).read_text())


def test_run_plots_are_served_from_an_allow_list(live_api):
    with httpx.Client(base_url=live_api.url, timeout=60) as client:
        for name in ("evaluation", "learning_curve"):
            r = client.get(f"/ui/runs/1/plots/{name}.png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", name
            assert r.content.startswith(b"\x89PNG") and "max-age" in r.headers["cache-control"]
            assert r.headers["x-content-type-options"] == "nosniff"
        for path in (
            "/ui/runs/1/plots/id_maps.png",  # an artifact, but not a plot
            "/ui/runs/1/plots/..%2Fid_maps.png",
            "/ui/runs/1/plots/../../id_maps.json",
            "/ui/runs/999/plots/evaluation.png",  # no such version
            "/ui/runs/abc/plots/evaluation.png",
            "/ui/runs?version=999",
            "/ui/runs?version=x",
        ):
            r = client.get(path)
            assert r.status_code == 404 and "Traceback" not in r.text, path
        assert client.get("/ui/runs", params={"version": 1}).status_code == 200


def test_runs_page_says_the_registry_is_unavailable(published, monkeypatch):
    """A registry nobody answers at: the evaluation section says so and the rest of the page is served."""
    monkeypatch.setenv(
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"
    )  # refused at once, not after minutes of retries
    settings = published.settings.model_copy(update={"mlflow_reader_tracking_uri": "http://127.0.0.1:9"})
    app = create_app(settings, poll_seconds=3600)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/ui/runs")
        assert r.status_code == 200 and "Traceback" not in r.text
        assert "MLflow registry unavailable, no evaluation for v1" in r.text
        assert 'id="versions"' in r.text and 'id="evaluation"' not in r.text
        r = client.get("/ui/runs/1/plots/evaluation.png")
        assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")


def test_pages_are_escaped_and_served_locally(live_api):
    """Without a browser: every page is HTML with its assets on this server, and the stylesheet is there."""
    with httpx.Client(base_url=live_api.url, timeout=60) as client:
        for path in PAGES:
            r = client.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            assert '<html lang="en">' in r.text
            assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no script
            assert not re.search(r"""(src|href)="(https?:)?//""", r.text), path  # nothing from elsewhere
        assert client.get("/ui/static/style.css").status_code == 200
        assert client.get("/ui").headers["location"] == "/ui/"
        r = client.post("/ui/new-movie", data={"title": "<b>bold</b>", "genres": "Drama", "limit": "3"})
        assert r.status_code == 200 and "&lt;b&gt;bold&lt;/b&gt;" in r.text and "<b>bold</b>" not in r.text


# --- without a browser: 404 pages and degraded pages ----------------------------------------------------------


def test_unknown_user_or_movie_is_a_404_page(live_api):
    with httpx.Client(base_url=live_api.url, timeout=60) as client:
        for path, says in (
            ("/ui/users/999999", "No user 999999"),
            ("/ui/movies/999999", "No movie 999999 in the catalogue"),
            ("/ui/users/abc", "No user &#39;abc&#39;"),
            ("/ui/movies/0", "No movie &#39;0&#39;"),
            ("/ui/jump?user_id=x", "No user &#39;x&#39;"),
        ):
            r = client.get(path)
            assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
            assert says in r.text and "Traceback" not in r.text, path
        assert client.get("/ui/jump", params={"user_id": "7"}).headers["location"] == "/ui/users/7"


def _until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def _degraded(response: httpx.Response, banner: str) -> None:
    assert response.status_code == 503, (response.request.url, response.status_code)
    assert response.headers["retry-after"] == "5" and response.headers["content-type"].startswith("text/html")
    assert banner in response.text and 'role="alert"' in response.text
    assert "Traceback" not in response.text


def test_pages_say_the_database_is_unavailable_and_recover(published, pg_proxy):
    pg_proxy.stop()
    app = create_app(published.settings, poll_seconds=3600, database_url=pg_proxy.url)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in PAGES:
            if path != "/ui/new-movie":  # needs the model only
                _degraded(client.get(path), "Database unavailable, retrying: database unavailable")
        assert client.get("/ui/new-movie").status_code == 200
        pg_proxy.start()
        _until(lambda: client.get("/ui/users/3").status_code == 200)
        assert client.get("/ui/runs").status_code == 200


def test_pages_say_nothing_is_published_and_no_model_is_loaded(settings):
    """A migrated, empty database and an empty registry: the lists and the model are missing."""
    app = create_app(settings, poll_seconds=3600)
    with TestClient(app, raise_server_exceptions=False) as client:
        home = client.get("/ui/")
        _degraded(home, "No batch published yet")
        assert "No champion model loaded yet" in home.text
        _degraded(client.get("/ui/users/1"), "No batch published yet")
        _degraded(client.get("/ui/runs"), "No batch published yet")
        _degraded(client.get("/ui/new-movie"), "No champion model loaded yet")
        _degraded(client.post("/ui/new-movie", data={"title": "T", "genres": "Drama"}), "No champion")
        assert client.get("/ui/movies/1").status_code == 404  # an empty catalogue
