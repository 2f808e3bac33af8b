"""Schemathesis against ``/openapi.json``: every operation, every check, and stateful runs.

The app runs in process (``schemathesis.openapi.from_asgi``) on the app role, with a world
seeded per test (``schemathesis_support.seed``): requests are sent as alice, owner of team
A, and their path parameters point at team A's rows or stay random. Every response goes
through all of Schemathesis's checks (schema and status conformance, content type and
headers, negative data rejection, positive data acceptance, ``ignored_auth``,
``use_after_free``, ``ensure_resource_availability``, ...) and through
:class:`PeerCheck`, our ``object_level_authorization`` with two peer identities.

Short profile (``pytest``): a few examples per operation and a short stateful run.
Long profile (``TEAMBOARD_TEST_PROFILE=long``): far more of both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as core_checks
from schemathesis.python import asgi
from schemathesis.specs.openapi import checks as openapi_checks

from teamboard.app import create_app
from teamboard.config import Settings
from tests.conftest import Actor
from tests.dbsetup import test_settings
from tests.profile import pick
from tests.reliability.schemathesis_support import (
    PeerCheck,
    World,
    caller_headers,
    fill_from_seed,
    schema_valid_is_valid,
    seed,
    team_snapshot,
)

EXAMPLES = pick(6, 150)
STATEFUL_SCENARIOS = pick(15, 400)
STATEFUL_STEPS = pick(6, 12)

# Every built-in check but the wall-clock one (no timing assertions in tests).
CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.positive_data_acceptance,
    openapi_checks.missing_required_header,
    openapi_checks.unsupported_method,
    openapi_checks.allow_header_conformance,
    openapi_checks.use_after_free,
    openapi_checks.ensure_resource_availability,
    openapi_checks.ignored_auth,
    openapi_checks.object_level_authorization,
    schema_valid_is_valid,
]
HYPOTHESIS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


@pytest.fixture(scope="module")
def asgi_app(settings: Settings) -> Iterator[Any]:
    """The app Schemathesis talks to; its lifespan runs in Schemathesis's event-loop thread."""
    yield create_app(settings)
    asgi.shutdown_lifespans()


@pytest.fixture
def api(asgi_app: Any) -> Iterator[requests.Session]:
    with asgi.get_client(asgi_app) as client:
        yield client


@pytest.fixture
def world(
    api: requests.Session,
    make_user: Callable[..., Actor],
    owner: psycopg.Connection[dict[str, Any]],
) -> World:
    return seed(api, make_user("alice"), make_user("bob"), make_user("carol"), owner)


@pytest.fixture
def peer_check(
    world: World, api: requests.Session, owner: psycopg.Connection[dict[str, Any]]
) -> PeerCheck:
    return PeerCheck(world, lambda: api, team_snapshot(owner, world.team_a))


@pytest.fixture(scope="module")
def api_schema(asgi_app: Any) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi_app)
    # A schema-valid request may still break a business rule that JSON Schema cannot state
    # (a time zone that exists, an anchor task of the same project, every status listed
    # once, an opaque cursor): those refusals are 400/422 with their own problem code;
    # attachment types are a setting (ATTACHMENT_ALLOWED_TYPES), refused with 415; a
    # well-formed If-Match that matches no current version is 412 (RFC 9110).
    # ``schema_valid_is_valid`` keeps the part that makes sense: the request validator
    # never refuses what the document says is valid.
    # Unknown query parameters are ignored, as by most HTTP APIs (cache busters, tracing
    # parameters): they are not negative data here.
    schema.config.generation.allow_extra_parameters = False
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400", "412", "415", "422"]
    return schema


def _operations() -> list[str]:
    """``METHOD /path`` of every documented operation (the document needs no database)."""
    document = create_app(test_settings()).openapi()
    return [f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops]


@pytest.mark.parametrize("label", _operations())
def test_operation(
    label: str, api_schema: schemathesis.BaseSchema, world: World, peer_check: PeerCheck
) -> None:
    """Every operation conforms to its documented contract, as alice on seeded data, for
    valid and invalid requests alike; whatever alice may do, bob (a peer in another team)
    sees as missing."""
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    cases = st.one_of(
        [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    ).flatmap(partial(fill_from_seed, world))

    @settings(max_examples=EXAMPLES, **HYPOTHESIS)
    @given(case=cases)
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=caller_headers(case, world), checks=[*CHECKS, peer_check])

    call()


def test_stateful(api_schema: schemathesis.BaseSchema, world: World, peer_check: PeerCheck) -> None:
    """Multi-step scenarios along the links (created ids fed into later calls), with the
    same checks; at least some scenarios must chain two or more calls."""
    chained: list[int] = []

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.steps = 0

        def teardown(self) -> None:
            chained.append(self.steps)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": caller_headers(case, world)}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            self.steps += 1
            case.validate_response(
                response,
                checks=[*CHECKS, peer_check],
                headers=kwargs.get("headers"),
                transport_kwargs=kwargs,
                recorder=self.recorder,
            )

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, **HYPOTHESIS
        )
    )
    assert any(steps >= 2 for steps in chained), chained
