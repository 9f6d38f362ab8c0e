"""Paths the router learned up front resolve exactly as the regex routes would."""

from __future__ import annotations

import pytest
from modelserver import errors
from modelserver.router import Router, exact, regex


async def handler(params, body, headers):  # never called
    raise AssertionError


MODEL = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+))?"


def router() -> Router:
    return Router(
        [
            regex(MODEL, "tfserving", {"GET": handler}),
            regex(MODEL + r":(?P<verb>predict|classify)", "tfserving", {"POST": handler}),
            exact("/v2/health/live", "v2", {"GET": handler}),
        ]
    )


PATHS = ["/v1/models/m:predict", "/v1/models/m/versions/3:classify", "/v1/models/m", "/v2/health/live"]


@pytest.mark.parametrize("path", PATHS)
def test_learned_paths_match_like_the_regexes(path):
    plain, learned = router(), router()
    learned.learn(PATHS)
    method = "GET" if path in ("/v1/models/m", "/v2/health/live") else "POST"
    route, params = plain.match(method, path)
    learned_route, learned_params = learned.match(method, path)
    assert learned_route == route
    assert dict(learned_params) == dict(params)


def test_a_learned_path_is_resolved_without_the_regexes_and_its_params_are_read_only():
    learned = router()
    learned.learn(["/v1/models/m:predict", "/nowhere"])
    assert set(learned.learned) == {"/v1/models/m:predict"}
    learned.patterns = []  # the regexes are not consulted any more for it
    route, params = learned.match("POST", "/v1/models/m:predict")
    assert route.protocol == "tfserving"
    assert params["model"] == "m" and params["verb"] == "predict" and params.get("version") is None
    with pytest.raises(TypeError):
        params["model"] = "other"  # type: ignore[index]


def test_a_learned_path_still_answers_405_and_unknown_paths_404():
    learned = router()
    learned.learn(["/v1/models/m:predict"])
    with pytest.raises(errors.ServingError) as wrong_method:
        learned.match("GET", "/v1/models/m:predict")
    assert wrong_method.value.status == 405
    with pytest.raises(errors.ServingError) as unknown:
        learned.match("GET", "/v1/nothing")
    assert unknown.value.status == 404
