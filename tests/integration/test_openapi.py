"""The API's documentation through the real gateway: /openapi.json and Swagger UI's files are
public, served byte for byte as generated with their content types (the bundle gzipped for
clients that accept it), and real answers of the stack match what the document declares.

tests/unit/test_openapi.py checks the document itself; test_docs_browser.py uses /docs in a
real browser.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import requests
from openapi_schema_validator import OAS30Validator

from devstack.stack import Stack
from gateway import docs_site
from tests.integration.conftest import Api, User, generated_csv


@pytest.fixture(scope="module")
def doc(api: Api) -> dict[str, Any]:
    r = api.get("/openapi.json")
    assert r.status_code == 200, r.text
    loaded = r.json()
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def user(api: Api) -> User:
    return api.register("openapi")


@pytest.mark.parametrize("doc_file", docs_site.FILES, ids=lambda f: f.url)
def test_the_docs_are_served_as_generated_without_a_token(
    api: Api, stack: Stack, doc_file: docs_site.DocFile
) -> None:
    r = requests.get(api.url(doc_file.url), headers={"Accept-Encoding": "identity"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == doc_file.content_type
    assert r.content == (stack.settings.descriptor_set.parent / doc_file.file).read_bytes()


def test_the_page_with_a_slash_redirects_to_it(api: Api) -> None:
    r = requests.get(api.url(f"{docs_site.PAGE}/"), allow_redirects=False, timeout=30)
    assert r.status_code == 301
    assert r.headers["location"].endswith(docs_site.PAGE)


def test_swagger_ui_is_gzipped_for_clients_that_accept_it(api: Api, stack: Stack) -> None:
    url = api.url("/docs/swagger-ui-bundle.js")
    r = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=30, stream=True)
    raw = r.raw.read(decode_content=False)
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    original = (stack.settings.descriptor_set.parent / "docs" / "swagger-ui-bundle.js")
    assert gzip.decompress(raw) == original.read_bytes()
    assert len(raw) < original.stat().st_size / 2


def test_api_answers_are_not_compressed(api: Api, user: User) -> None:
    r = api.get("/tasks", headers={**user.headers, "Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers


def test_the_gateways_own_errors_keep_the_json_shape(api: Api, user: User) -> None:
    """Only the replies from 400 up get the error body (the docs' 200s are left alone)."""
    for r, status in ((api.get("/no/such/route", headers=user.headers), 404),
                      (api.get("/no/such/route"), 401)):
        assert r.status_code == status
        assert r.headers["content-type"] == "application/json"
        assert r.json()["status"] == status and isinstance(r.json()["message"], str)


# --- real answers against the document ---------------------------------------------------------


def _declared(doc: dict[str, Any], verb: str, path: str, r: requests.Response) -> None:
    """The answer's status and content type are declared for the route, and a JSON body
    matches the declared schema."""
    responses = doc["paths"][path][verb]["responses"]
    declared = responses.get(str(r.status_code))
    assert declared is not None, f"{verb} {path}: {r.status_code} not declared"
    if "$ref" in declared:
        declared = doc["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
    if "content" not in declared:
        assert not r.content
        return
    media = r.headers["content-type"].split(";")[0].strip()
    assert media in declared["content"] or "*/*" in declared["content"], (path, media)
    if media == "application/json":
        schema = declared["content"][media]["schema"]
        OAS30Validator({**schema, "components": doc["components"]}).validate(r.json())


@pytest.fixture(scope="module")
def imported(api: Api, user: User) -> str:
    task_id = api.upload_ok(user, generated_csv(5, 915_000), "openapi.csv")
    task = api.wait_task(user, task_id)
    assert task["status"] == "done", task
    return task_id


def test_real_answers_match_the_document(api: Api, user: User, doc: dict[str, Any],
                                         imported: str) -> None:
    h = user.headers
    movies = api.get("/movies", headers=h, params={"limit": 5})
    assert movies.status_code == 200 and movies.json()
    calls = [
        ("get", "/movies", movies),
        ("get", "/v1/movies", api.get("/v1/movies", headers=h, params={"limit": 5})),
        ("get", "/movies/{movie_id}", api.get(f"/movies/{movies.json()[0]['_id']}", headers=h)),
        ("get", "/tasks", api.get("/tasks", headers=h)),
        ("get", "/v1/tasks", api.get("/v1/tasks", headers=h)),
        ("get", "/task/{task_id}", api.get(f"/task/{imported}", headers=h)),
        ("get", "/task/{task_id}/watch", api.get(f"/task/{imported}/watch", headers=h)),
        ("get", "/task/{task_id}/errors", api.get(f"/task/{imported}/errors", headers=h)),
        ("get", "/auth/me", api.get("/auth/me", headers=h)),
        ("get", "/.well-known/jwks.json", api.get("/.well-known/jwks.json")),
        ("get", "/ratings", api.get("/ratings", headers=h)),
        ("get", "/preferences", api.get("/preferences", headers=h)),
        # Errors: from the gateway (no token, an unknown query parameter, a value that is not
        # an integer) and from a service (out of bounds, unknown).
        ("get", "/movies", api.get("/movies")),
        ("get", "/movies", api.get("/movies", headers=h, params={"yeer": 1})),
        ("get", "/movies", api.get("/movies", headers=h, params={"year": "abc"})),
        ("get", "/movies", api.get("/movies", headers=h, params={"limit": 5000})),
        ("get", "/task/{task_id}", api.get(f"/task/{'0' * 32}", headers=h)),
        ("post", "/auth/login", api.post("/auth/login", json={"username": "nobody-openapi",
                                                               "password": "x" * 8})),
    ]
    for verb, path, r in calls:
        _declared(doc, verb, path, r)
    statuses = [r.status_code for *_, r in calls]
    assert {200, 400, 401, 404} <= set(statuses)


def test_a_watch_is_what_the_document_says(api: Api, user: User, doc: dict[str, Any],
                                           imported: str) -> None:
    """A server stream through the transcoder: one JSON object per line, labelled so (the
    transcoder said application/json, and a client that parsed the body as one JSON document
    failed once the stream had two lines: the fuzz test found it)."""
    r = api.get(f"/task/{imported}/watch", headers=user.headers)
    declared = doc["paths"]["/task/{task_id}/watch"]["get"]["responses"]["200"]
    assert "one JSON object per line" in declared["description"]
    assert list(declared["content"]) == ["application/x-ndjson"]
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert lines and lines[-1]["status"] == "done"
