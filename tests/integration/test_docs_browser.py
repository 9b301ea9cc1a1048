"""Swagger UI at /docs, used in a real headless browser as a person would: authorize with a
token, run GET /movies with "Try it out", and read the 200 answer from the page.

Playwright drives Debian's Chromium (`make browser` installs it; Playwright's own download is
not reachable here). CI (.ci/run sets CI) fails without it; elsewhere the test is skipped with
the command that installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Api, generated_csv

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        message = f"no Chromium at {CHROMIUM}: run `make browser` (apt-get, as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_try_it_out_lists_movies_with_a_token(api: Api, browser: Any) -> None:
    user = api.register("browser")
    task_id = api.upload_ok(user, generated_csv(3, 916_000), "browser.csv")
    assert api.wait_task(user, task_id)["status"] == "done"
    title = api.get("/movies", headers=user.headers,
                    params={"limit": 1, "sort_field": "release_date"}).json()[0]["title"]

    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(api.url("/docs"))
    page.wait_for_selector(".swagger-ui .information-container")
    assert "Marquee" in page.inner_text(".information-container")

    # Authorize: the bearer scheme's dialog.
    page.click("button.authorize")
    page.fill(".auth-container input[type=text]", user.token)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".auth-btn-wrapper button.btn-done")

    # GET /movies: open it, "Try it out", limit 1 in release-date order, Execute.
    operation = page.locator("#operations-CatalogService-CatalogService_ListMoviesJson")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("tr[data-param-name=limit] input").fill("1")
    operation.locator("tr[data-param-name=sort_field] input").fill("release_date")
    operation.locator("button.execute").click()

    live = operation.locator(".live-responses-table .response")
    live.locator(".response-col_status").first.wait_for()
    assert live.locator(".response-col_status").first.inner_text().strip() == "200"
    body = live.locator(".response-col_description .microlight").first.inner_text()
    assert title in body
    # The request really carried the token (the curl line Swagger UI shows).
    assert f"Bearer {user.token}" in operation.locator(".curl-command").inner_text()
    assert not errors, errors
