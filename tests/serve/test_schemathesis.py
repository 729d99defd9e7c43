"""Schemathesis against the served OpenAPI document: for every operation, generated requests (valid
and invalid ones) get no 5xx, and every response conforms to the schema (status code documented,
content type, body schema), invalid ones are refused with a documented 4xx that names the parameter."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.serve.server import get

EXAMPLES = 12  # per operation and mode: about 25 operations x 2 modes in ~30 s here


def _check(operation: Any, mode: schemathesis.GenerationMode, base: str, seed: int) -> Callable[[], None]:
    @hypothesis.seed(seed)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
        # a schema-valid request may still be refused for what a schema cannot say (end before start,
        # a 13th month): then the 400 must name one of the request's own parameters
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if response.status_code == 400:
            named = response.json()["parameter"]
            raw = operation.definition.raw.get("requestBody", {}).get("content", {})
            fields = raw.get("application/json", {}).get("schema", {}).get("properties", {})
            sent = {*(case.query or {}), *(case.path_parameters or {}), "body", *fields}
            assert named in sent, f"the 400 names {named!r}, not a parameter of the request ({sorted(sent)})"

    return check


def test_every_route_conforms_to_the_served_schema(served: str) -> None:
    seed = random.randrange(2**32)
    print(f"schemathesis seed {seed}")
    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    documented = set()
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        documented.add((operation.method.upper(), operation.path))
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                _check(operation, mode, served, seed)()
            except Exception as exc:  # noqa: BLE001 - a failed check is schemathesis' own exception type
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert ("GET", "/api/v1/bars") in documented and ("POST", "/api/v1/alerts/{alert_id}/ack") in documented


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v1/bars/extra"])
def test_an_undocumented_route_is_a_404(served: str, path: str) -> None:
    assert get(served + path)[0] == 404
