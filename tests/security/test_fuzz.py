"""Property-based fuzzing of every route of the OpenAPI document with schemathesis, against the
session's stack, signed in as a real organization owner: no answer is a 5xx, every status is one
the document lists for the route, and every body and content type is the documented one.

The document is the one gateway_http serves (checked below), built in-process so that pytest can
make one test per operation at collection time. Examples are few per operation and the seed fixed,
so a run is repeatable and short; the coverage phase adds schemathesis's boundary cases (missing
fields, wrong types) deterministically.
"""
import copy
import json
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

import gateway_http.service  # noqa: F401  (declaring the routes fills the document)
from gateway_http.openapi import openapi_document
from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.e2e  # drives the session's stack over HTTP

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
EXAMPLES_PER_OPERATION = 10  # each failed login counts against the client address's limit: keep under it

# A copy: schemathesis edits the dict it is given, and openapi_document() is the one gateway_http serves.
schema = schemathesis.openapi.from_dict(copy.deepcopy(openapi_document()),
                                        config=schemathesis.Config.from_dict({"seed": 7}))


class Fuzzer:
    """An owner of an organization; its id goes into {org_id}, so calls get past the 404 of a stranger."""

    def __init__(self, stack):
        self.base_url = stack.base_url
        self.ingest_key = stack.env["USAGE_INGEST_KEY"]
        self.email = f"fuzzer-{uuid.uuid4().hex[:10]}@example.com"
        signed_up = requests.post(f"{self.base_url}/api/v1/auth/signup", timeout=30, json={
            "email": self.email, "password": PASSWORD, "name": "Fuzz Owner", "country": "US"}).json()
        self.token = signed_up["token"]
        self.org_id = requests.post(f"{self.base_url}/api/v1/orgs", json={"name": "Fuzzed"}, timeout=30,
                                    headers={"Authorization": f"Bearer {self.token}"}).json()["id"]

    def credentials(self, case):
        if case.operation.path == "/api/v1/usage/events":
            return {"Authorization": f"Bearer {self.ingest_key}"}
        if case.operation.path == "/api/v1/auth/logout":  # a session of its own, or the rest would get 401
            login = requests.post(f"{self.base_url}/api/v1/auth/login", timeout=30,
                                  json={"email": self.email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            return {"Authorization": f"Bearer {login.json()['token']}"}
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def fuzzer(stack):
    return Fuzzer(stack)


def test_the_fuzzed_document_is_the_served_one(stack):
    served = requests.get(f"{stack.base_url}/api/v1/openapi.json", timeout=30).json()
    assert served == json.loads(json.dumps(openapi_document()))


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_documented(case, fuzzer):
    if "org_id" in (case.path_parameters or {}):
        case.path_parameters["org_id"] = fuzzer.org_id
    case.call_and_validate(base_url=fuzzer.base_url, headers=fuzzer.credentials(case), checks=CHECKS,
                           timeout=30)
