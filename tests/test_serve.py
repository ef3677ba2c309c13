"""``kgem serve``: every endpoint against the Python API's answers (and brute force where the API has none), bad
requests as 4xx JSON, a load test against a real uvicorn server on 127.0.0.1, the web page in a real headless
browser (Debian's chromium, driven by Playwright), and the command line."""

from __future__ import annotations

import http.client
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import torch

import kgem
from bench_script import load_bench
from kgem.cli import main
from kgem.errors import KgemError
from kgem.inference import predictor
from kgem.plots import most_frequent_relation
from kgem.serve import Limits, ServedModel, create_app
from kgem.serve.server import running
from kgem.serve.service import LabelSearch

pytest.importorskip("fastapi")  # the serve extra, kgem[serve]
pytest.importorskip("uvicorn")
with warnings.catch_warnings():  # newer Starlette asks for httpx2 and warns on import; httpx works the same
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

bench = load_bench("serve.py", "bench_serve")
CHROMIUM = shutil.which("chromium")
STATIC = Path(kgem.__file__).parent / "serve" / "static"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    kgem.pipeline(overrides=["data.dataset=nations", "model.dim=16", "training.epochs=3", "training.batch_size=128"],
                  output=out, progress=False)
    return out / "model"


@pytest.fixture(scope="module")
def nations() -> kgem.Dataset:
    return kgem.load_dataset("nations")


@pytest.fixture(scope="module")
def python_api(model_dir: Path, nations: kgem.Dataset) -> kgem.LoadedModel:
    """What the server should answer: the Python API with the model's dataset's facts."""
    return kgem.load(model_dir).with_known(nations)


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(model_dir)) as test_client:
        yield test_client


def rows(response: Any, status: int = 200) -> pd.DataFrame:
    assert response.status_code == status, response.text
    return pd.DataFrame(response.json()["rows"])


def assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The API's table is the Python API's DataFrame: same columns and values (float32 scores exactly, as JSON
    carries them as the doubles they widen to)."""
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False, check_exact=True)


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and body["error"] and "\n" not in body["error"]
    return body


QUERIES = [("usa", "intergovorgs"), ("china", "embassy"), ("uk", "treaties"), ("usa", "intergovorgs")]


@pytest.mark.parametrize("remove_known", [False, True])
def test_single_predictions_are_the_python_apis(client: TestClient, python_api: kgem.LoadedModel,
                                                remove_known: bool) -> None:
    flag = {"remove_known": str(remove_known).lower()}
    got = rows(client.get("/api/predict/tails", params={"head": "usa", "relation": "intergovorgs", "k": 4, **flag}))
    assert_same(got, python_api.predict_tails([("usa", "intergovorgs")], k=4, remove_known=remove_known))
    got = rows(client.get("/api/predict/heads", params={"relation": "embassy", "tail": "uk", "k": 3, **flag}))
    assert_same(got, python_api.predict_heads([("embassy", "uk")], k=3, remove_known=remove_known))
    got = rows(client.get("/api/predict/relations", params={"head": "usa", "tail": "uk", "k": 5, **flag}))
    assert_same(got, python_api.predict_relations([("usa", "uk")], k=5, remove_known=remove_known))
    assert not remove_known or not got["known"].any()


def test_batch_predictions_are_the_python_apis_in_one_batched_call(client: TestClient, python_api: kgem.LoadedModel,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = predictor.predict_tails
    monkeypatch.setattr(predictor, "predict_tails", lambda *a, **kw: calls.append(a) or original(*a, **kw))
    body = {"queries": [{"head": h, "relation": r} for h, r in QUERIES], "k": 3}
    got = rows(client.post("/api/predict/tails", json=body))
    assert len(calls) == 1  # every query of the request in one call of the batched inference, no loop per query
    assert_same(got, python_api.predict_tails(QUERIES, k=3))
    pairs = [("embassy", "uk"), ("intergovorgs", "usa")]
    got = rows(client.post("/api/predict/heads", json={"queries": [{"relation": r, "tail": t} for r, t in pairs],
                                                        "k": 2, "remove_known": True}))
    assert_same(got, python_api.predict_heads(pairs, k=2, remove_known=True))
    pairs = [("usa", "uk"), ("china", "india")]
    got = rows(client.post("/api/predict/relations", json={"queries": [{"head": h, "tail": t} for h, t in pairs]}))
    assert_same(got, python_api.predict_relations(pairs, k=10))


def test_scores_and_probabilities_are_the_python_apis(model_dir: Path, client: TestClient, nations: kgem.Dataset,
                                                      python_api: kgem.LoadedModel) -> None:
    triples = [("usa", "intergovorgs", "uk"), ("china", "embassy", "usa"), ("burma", "treaties", "burma")]
    body = {"triples": [dict(zip(("head", "relation", "tail"), t)) for t in triples]}
    assert_same(rows(client.post("/api/score", json=body)), python_api.score_triples(triples))
    assert error(client.post("/api/probabilities", json=body), 400)["error"].startswith(
        "predict_proba needs a calibrated model")
    calibrated = kgem.load(model_dir).calibrate(nations, "platt")
    with TestClient(create_app(calibrated, dataset=nations)) as calibrated_client:
        info = calibrated_client.get("/api/info").json()
        assert info["calibrated"] and info["calibrator"] == "platt"
        got = rows(calibrated_client.post("/api/probabilities", json=body))
        expected = calibrated.predict_proba(triples)
        np.testing.assert_array_equal(got["probability"].to_numpy(), expected)
        scored = rows(calibrated_client.post("/api/score", json=body))
        assert_same(scored, calibrated.with_known(nations).score_triples(triples))
        assert "probability" in scored.columns and scored["probability"].between(0, 1).all()
        predicted = rows(calibrated_client.get("/api/predict/tails", params={"head": "usa", "relation": "embassy"}))
        assert "probability" in predicted.columns


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_neighbours_are_the_python_apis(client: TestClient, python_api: kgem.LoadedModel, metric: str) -> None:
    got = rows(client.get("/api/similar", params={"label": "usa", "k": 4, "metric": metric}))
    assert_same(got, python_api.similar(["usa"], k=4, metric=metric))
    body = {"labels": ["usa", "china"], "k": 3, "metric": metric}
    assert_same(rows(client.post("/api/similar", json=body)), python_api.similar(["usa", "china"], k=3, metric=metric))
    got = rows(client.post("/api/similar", json={"labels": ["embassy"], "k": 2, "kind": "relation"}))
    assert_same(got, python_api.similar(["embassy"], k=2, kind="relation"))


def test_top_triples_are_the_python_apis(client: TestClient, python_api: kgem.LoadedModel) -> None:
    assert_same(rows(client.get("/api/top", params={"k": 7})), python_api.top_triples(k=7))
    got = rows(client.get("/api/top", params={"k": 5, "relation": "embassy", "remove_known": "true"}))
    assert_same(got, python_api.top_triples(k=5, relation="embassy", remove_known=True))
    assert set(got["relation"]) == {"embassy"} and not got["known"].any()


def test_an_entitys_facts_are_every_known_triple_it_is_in(client: TestClient, nations: kgem.Dataset) -> None:
    frames = [pd.DataFrame(split.hrt.numpy(), columns=["h", "r", "t"]) for split in nations.splits().values()]
    every = pd.concat(frames).drop_duplicates()
    usa = int(nations.entities.ids(["usa"])[0])
    mine = every[(every["h"] == usa) | (every["t"] == usa)].sort_values(["r", "h", "t"])
    expected = [{"head": nations.entities.labels[h], "relation": nations.relations.labels[r],
                 "tail": nations.entities.labels[t]} for h, r, t in mine.to_numpy()]
    answer = client.get("/api/facts", params={"entity": "usa", "limit": 1000}).json()
    assert answer["available"] and answer["total"] == len(expected) and not answer["truncated"]
    assert answer["facts"] == expected
    short = client.get("/api/facts", params={"entity": "usa", "limit": 5}).json()
    assert short["truncated"] and short["facts"] == expected[:5] and short["total"] == len(expected)


def test_without_the_dataset_nothing_is_known(model_dir: Path) -> None:
    with TestClient(create_app(model_dir, with_known=False)) as plain:
        assert plain.get("/api/facts", params={"entity": "usa"}).json()["available"] is False
        assert "known" not in rows(plain.get("/api/predict/tails", params={"head": "usa", "relation": "embassy"}))
        assert plain.get("/api/info").json()["known_facts"] is None
        assert error(plain.get("/api/predict/tails", params={"head": "usa", "relation": "embassy",
                                                             "remove_known": "true"}), 400)["error"]


def brute_search(labels: list[str], query: str, limit: int) -> list[tuple[int, str]]:
    q = query.lower()
    prefix = [(i, "prefix") for i, label in enumerate(labels) if label.lower().startswith(q)]
    inside = [(i, "substring") for i, label in enumerate(labels) if q in label.lower()[1:] and
              not label.lower().startswith(q)]
    return (prefix + inside)[:limit]


def test_label_search_is_prefix_then_substring_as_brute_force() -> None:
    rng = np.random.default_rng(0)
    alphabet = [*"abAB/_é", "İ"]  # 'İ'.lower() is two characters: offsets must follow the lowered text
    labels = sorted({"".join(rng.choice(alphabet, rng.integers(1, 6))) for _ in range(400)})
    search = LabelSearch(np.asarray(labels, dtype=object))
    for query in ["a", "ab", "B", "/", "é", "i̇", "ba/", "zzz", "AbA", "_"]:
        for limit in (1, 3, 50, 1000):
            assert search.find(query, limit) == brute_search(labels, query, limit), (query, limit)
    assert search.find("", 5) == [] and search.find("a\nb", 5) == []


def test_search_endpoint_bounds_its_answer(client: TestClient, nations: kgem.Dataset) -> None:
    labels = [str(x) for x in nations.entities.labels]
    answer = client.get("/api/search", params={"q": "U", "limit": 2}).json()
    expected = brute_search(labels, "U", 3)
    assert answer["matches"] == [{"label": labels[i], "match": how} for i, how in expected[:2]]
    assert answer["truncated"] == (len(expected) > 2)
    relations = client.get("/api/search", params={"q": "emb", "kind": "relation"}).json()["matches"]
    assert {"label": "embassy", "match": "prefix"} in relations
    error(client.get("/api/search", params={"q": "u", "limit": 101}), 422)  # over max_search
    error(client.get("/api/search", params={"q": ""}), 422)


def test_info_relations_and_map(client: TestClient, python_api: kgem.LoadedModel, nations: kgem.Dataset) -> None:
    info = client.get("/api/info").json()
    assert (info["num_entities"], info["num_relations"], info["dim"]) == (14, 55, 16)
    assert info["dataset"] == "nations" and info["known_facts"] == len(python_api.known_triples() or [])
    assert info["limits"] == vars(Limits()) and 0 < info["test_metrics"]["mrr"] <= 1
    assert client.get("/api/relations").json()["relations"] == nations.relations.labels.tolist()
    answer = client.get("/api/map").json()
    assert answer["labels"] == nations.entities.labels.tolist() and not answer["sampled"]
    model = python_api.model
    with torch.no_grad():
        table = model.entity(torch.arange(model.num_entities))
    real = np.concatenate([table.real.numpy(), table.imag.numpy()], 1).astype(np.float64)
    centred = real - real.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # the principal axes, by the covariance's eigenvectors
    for column, axis in zip(("x", "y"), (vectors[:, -1], vectors[:, -2])):
        expected = centred @ axis
        got = np.asarray(answer[column])
        sign = np.sign(got @ expected)
        np.testing.assert_allclose(got, sign * expected, atol=1e-4)
    groups = most_frequent_relation(python_api.encode(nations.train), 14, nations.relations.labels)
    assert answer["groups"] == groups.tolist()


def test_a_large_table_is_mapped_by_a_seeded_sample(python_api: kgem.LoadedModel) -> None:
    served = ServedModel(python_api, limits=Limits(map_points=5))
    answer = served.embedding_map
    assert answer["sampled"] and len(answer["labels"]) == 5 and answer["groups"] is None
    ids = python_api.entities.lookup(answer["labels"])
    assert (np.diff(ids) > 0).all() and answer == ServedModel(python_api, limits=Limits(map_points=5)).embedding_map


def test_unknown_labels_are_404_with_suggestions(client: TestClient) -> None:
    body = error(client.get("/api/predict/tails", params={"head": "usaa", "relation": "embassy"}), 404)
    assert body["kind"] == "entity" and body["label"] == "usaa" and body["suggestions"][0] == "usa"
    body = error(client.get("/api/predict/tails", params={"head": "usa", "relation": "embasy"}), 404)
    assert body["kind"] == "relation" and "embassy" in body["suggestions"]
    batch = {"triples": [{"head": "usa", "relation": "embassy", "tail": "uk"},
                         {"head": "chna", "relation": "embassy", "tail": "uk"}]}
    body = error(client.post("/api/score", json=batch), 404)
    assert body["label"] == "chna" and "china" in body["suggestions"]
    assert error(client.get("/api/facts", params={"entity": "ussr_"}), 404)["suggestions"][0] == "ussr"
    assert error(client.get("/api/similar", params={"label": "nowhere-near"}), 404)["suggestions"] == []
    suggestions = error(client.get("/api/top", params={"relation": "Embassy"}), 404)["suggestions"]
    assert suggestions[0] == "embassy" and "attackembassy" in suggestions  # close ones, then ones holding it


@pytest.mark.parametrize("k", ["0", "-3", "1001", "ten", "2.5"])
def test_a_bad_k_is_422(client: TestClient, k: str) -> None:
    body = error(client.get("/api/predict/tails", params={"head": "usa", "relation": "embassy", "k": k}), 422)
    assert "k" in body["error"]
    error(client.get("/api/similar", params={"label": "usa", "k": k}), 422)
    error(client.get("/api/top", params={"k": k}), 422)
    if k.lstrip("-").isdigit():
        json_body = {"queries": [{"head": "usa", "relation": "embassy"}], "k": int(k)}
        error(client.post("/api/predict/tails", json=json_body), 422)


def test_malformed_requests_are_4xx_json(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    assert error(client.post("/api/score", content=b'{"triples": [', headers=headers), 400)["error"].startswith(
        "malformed JSON body")
    body = error(client.post("/api/score", json={"triples": [{"head": "usa", "relation": "embassy"}]}), 422)
    assert any(p["where"] == "body.triples.0.tail" for p in body["problems"])
    error(client.post("/api/score", json={"triples": [], "extra": 1}), 422)  # a misspelt key is not ignored
    error(client.post("/api/score", json={"triples": []}), 422)  # an empty batch
    error(client.post("/api/predict/tails", json=[1, 2]), 422)
    error(client.get("/api/predict/tails", params={"head": "usa"}), 422)  # the relation is missing
    error(client.get("/api/similar", params={"label": "usa", "metric": "manhattan"}), 422)
    error(client.get("/api/nothing"), 404)
    error(client.delete("/api/info"), 405)
    error(client.put("/api/predict/tails", json={}), 405)


def test_limits_of_batches_bodies_and_scans(model_dir: Path) -> None:
    app = create_app(model_dir, max_batch=3, max_k=5, max_top_scores=14 * 14 * 10, max_body_bytes=2000)
    with TestClient(app) as small:
        queries = [{"head": "usa", "relation": "embassy"}] * 4
        assert "between 1 and 3" in error(small.post("/api/predict/tails", json={"queries": queries, "k": 2}),
                                          422)["error"]
        rows(small.post("/api/predict/tails", json={"queries": queries[:3], "k": 5}))
        assert len(rows(small.get("/api/similar", params={"label": "usa"}))) == 5  # the default k, 10, cut to max_k
        assert "k must be between 1 and 5" in error(small.get("/api/similar", params={"label": "usa", "k": 6}),
                                                    422)["error"]
        assert "name a relation" in error(small.get("/api/top"), 422)["error"]  # 14 x 14 x 55 triples to score
        rows(small.get("/api/top", params={"relation": "embassy"}))
        big = json.dumps({"triples": [{"head": "usa", "relation": "embassy", "tail": "uk"}] * 40}).encode()
        assert len(big) > 2000
        headers = {"content-type": "application/json"}
        assert "2000 bytes" in error(small.post("/api/score", content=big, headers=headers), 413)["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield from (big[i : i + 500] for i in range(0, len(big), 500))

        error(small.post("/api/score", content=chunks(), headers=headers), 413)
        error(small.post("/api/score", content=big[:1500] + b"]}", headers=headers), 400)  # within: JSON's turn


def test_openapi_lists_every_endpoint_and_nothing_writes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = {path: set(methods) for path, methods in schema["paths"].items()}
    assert paths == {"/api/info": {"get"}, "/api/relations": {"get"}, "/api/search": {"get"}, "/api/facts": {"get"},
                     "/api/predict/tails": {"get", "post"}, "/api/predict/heads": {"get", "post"},
                     "/api/predict/relations": {"get", "post"}, "/api/score": {"post"},
                     "/api/probabilities": {"post"}, "/api/similar": {"get", "post"}, "/api/top": {"get"},
                     "/api/map": {"get"}}
    assert client.get("/docs").status_code == 404  # its pages load scripts from a CDN: off


def test_requests_leave_the_model_unchanged(model_dir: Path) -> None:
    served = ServedModel.open(model_dir)
    before = {name: tensor.clone() for name, tensor in served.loaded.model.state_dict().items()}
    with TestClient(create_app(served)) as fresh:
        rows(fresh.post("/api/predict/tails", json={"queries": [{"head": "usa", "relation": "embassy"}] * 8}))
        rows(fresh.get("/api/top", params={"k": 3}))
        fresh.get("/api/map")
    after = served.loaded.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before) and not served.loaded.model.training


def test_cors_is_off_by_default_and_on_for_the_origins_given(model_dir: Path, client: TestClient) -> None:
    origin = {"Origin": "http://localhost:3000"}
    assert "access-control-allow-origin" not in client.get("/api/info", headers=origin).headers
    with TestClient(create_app(model_dir, cors_origins=["http://localhost:3000"])) as open_client:
        answer = open_client.get("/api/info", headers=origin)
        assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = open_client.get("/api/info", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_the_page_is_served_offline(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():  # nothing loads from elsewhere: no absolute URL in the page's files
        assert not re.search(r"(https?:)?//[a-z0-9]", path.read_text(encoding="utf-8"), re.I), path.name


def test_load_from_concurrent_clients_has_no_errors(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bounded loop of concurrent requests from clients on 127.0.0.1 against a real uvicorn server: every one
    answered 200 with its rows, and each distinct request the same answer every time."""
    served = ServedModel.open(model_dir)
    requests = [request for endpoint in bench.workload(served, 40, 5, 4, seed=1).values() for request in endpoint]
    with running(create_app(served)) as url:
        fired = bench.fire(url, requests * 2, clients=8, timeout=30)
        answers: dict[tuple[str, str, bytes | None], set[bytes]] = {}
        connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port)
        for method, path, body, _ in requests[::7]:
            for _ in range(2):
                connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
                answers.setdefault((method, path, body), set()).add(connection.getresponse().read())
        connection.close()
    report = fired.report()
    with capsys.disabled():
        print(f"\nserve load test: {report}")
    assert report["status"] == "ok" and report["requests"] == len(requests) * 2 and not fired.errors
    assert all(len(seen) == 1 for seen in answers.values())


def test_a_kept_alive_connection_is_answered_without_delay(model_dir: Path) -> None:
    """Without TCP_NODELAY on the server's connections, each response's body waits for the client's delayed ACK of
    its headers: 40 ms or more per request on a kept-alive connection, whatever the load."""
    with running(create_app(model_dir, with_known=False)) as url:
        connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port)
        took = []
        for _ in range(10):
            started = time.perf_counter()
            connection.request("GET", "/api/info")
            assert connection.getresponse().read()
            took.append(time.perf_counter() - started)
        connection.close()
    assert min(took[1:]) < 0.03


def test_the_load_loop_counts_a_failed_request_as_a_failure(model_dir: Path) -> None:
    with running(create_app(model_dir, with_known=False)) as url:
        fired = bench.fire(url, [("GET", "/api/similar?label=usa&k=3", None, 3),
                                 ("GET", "/api/similar?label=nowhere&k=3", None, 3),
                                 ("GET", "/api/similar?label=usa&k=3", None, 4)], clients=2)
    report = fired.report()
    assert report["status"] == "failed" and report["errors"] == 2 and "p50_ms" not in report
    with pytest.raises(ValueError, match="only ever sent to this machine"):
        bench.fire("http://10.0.0.1:8000", [], clients=1)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; make test does)")
def test_the_page_in_a_headless_browser(model_dir: Path, tmp_path: Path) -> None:
    """Search an entity, pick it from the autocomplete, see its predictions (known ones marked), facts and
    neighbours, click another entity on the map; every request goes to the server; the screenshot is a picture."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with running(create_app(model_dir)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            requested: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready=true]", timeout=20_000)
            assert "14 entities" in page.inner_text("#model-info")
            page.fill("#search", "US")
            page.wait_for_selector("#suggestions li[data-label=usa]", timeout=10_000)
            assert page.locator("#suggestions li").all_inner_texts()[0].startswith("usa")
            page.click("#suggestions li[data-label=usa]")
            page.wait_for_selector("#predictions .relation li", timeout=20_000)
            page.wait_for_selector("#neighbours li", timeout=20_000)
            assert page.inner_text("#selected") == "usa"
            assert page.locator("#predictions .relation").count() == 12  # then "show all 55 relations"
            assert page.locator("#predictions .known-mark").count() > 0
            assert page.locator("#facts tbody tr").count() > 0 and page.locator("#neighbours li").count() == 10
            page.screenshot(path=str(tmp_path / "page.png"))
            point = page.evaluate("kgem.pointOf('china')")
            page.mouse.click(point["x"], point["y"])
            page.wait_for_function("kgem.state.entity === 'china'", timeout=10_000)
            page.wait_for_function("document.querySelector('#selected').textContent === 'china'")
        finally:
            browser.close()
    assert not problems
    assert requested and all(r.startswith(url + "/") for r in requested)
    picture = Image.open(io.BytesIO((tmp_path / "page.png").read_bytes()))
    picture.load()
    pixels = np.asarray(picture.convert("RGB"))
    assert pixels.shape[:2] == (1000, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50 and pixels.std() > 10  # drawn, not blank


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_kgem_serve_serves_on_loopback_until_stopped(model_dir: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "kgem", "serve", str(model_dir), "--port", str(port), "-q",
                                "--max-k", "4"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and process.poll() is None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/api/predict/tails?head=usa&relation=embassy&k=5")
                response = connection.getresponse()
                answer = (response.status, json.loads(response.read()))
            except OSError:
                time.sleep(0.2)
        assert answer is not None and answer[0] == 422 and "between 1 and 4" in answer[1]["error"]
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"serving {model_dir} at http://127.0.0.1:{port}" in output


def test_kgem_serve_errors_are_one_line(model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(model_dir), "--port", str(taken.getsockname()[1])]) == 2
    assert "in use" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["serve", str(model_dir), "--port", "70000"])
    assert usage.value.code == 2 and "a port is a number from 0 to 65535" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as without the extra
    assert main(["serve", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "pip install 'kgem[serve]'" in err
    with pytest.raises(KgemError, match=r"kgem\[serve\]"):
        create_app(model_dir)
