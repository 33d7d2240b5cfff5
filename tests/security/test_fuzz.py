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
    """An owner of an organization, with records of each kind a route can name: {org_id} is always
    its organization (past the 404 a stranger gets), and about half of the other ids generated are
    swapped for its real records, so answers about real ones are checked against the document too."""

    def __init__(self, stack):
        self.base_url = stack.base_url
        self.ingest_key = stack.env["USAGE_INGEST_KEY"]
        self.email, self.token = self._sign_up("Fuzz Owner")
        self.org_id = self._post("/api/v1/orgs", {"name": "Fuzzed"})["id"]
        member_email, member_token = self._sign_up("Fuzzed Member")
        invitation = self._post(f"/api/v1/orgs/{self.org_id}/invitations", {"email": member_email, "role": "admin"})
        self._post(f"/api/v1/invitations/{invitation['token']}/accept", token=member_token)
        self.records = {
            "user_id": self._get("/api/v1/me", token=member_token)["user"]["id"],
            "invitation_id": self._post(f"/api/v1/orgs/{self.org_id}/invitations", {
                "email": f"invitee-{uuid.uuid4().hex[:8]}@example.com", "role": "standard"})["id"],
        }
        plan = {"plan_code": "starter_monthly"}
        for form, acct in (("personal", "/api/v1/billing/personal"), ("org", f"/api/v1/orgs/{self.org_id}/billing")):
            self.records[(form, "checkout_id")] = self._post(f"{acct}/checkout", plan)["id"]
            self.records[(form, "link_id")] = self._post(f"{acct}/payment-links", plan)["id"]

    def _sign_up(self, name):
        email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
        signed_up = self._post("/api/v1/auth/signup", {"email": email, "password": PASSWORD, "name": name,
                                                       "country": "US"}, token=None)
        return email, signed_up["token"]

    def _post(self, path, body=None, token=""):
        return self._call("POST", path, body, token)

    def _get(self, path, token=""):
        return self._call("GET", path, None, token)

    def _call(self, method, path, body, token):
        token = self.token if token == "" else token
        answer = requests.request(method, self.base_url + path, json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def aim(self, case):
        parameters = case.path_parameters or {}
        form = "org" if "org_id" in parameters else "personal"
        if "org_id" in parameters:
            parameters["org_id"] = self.org_id
        for name, generated in parameters.items():
            real = self.records.get(name) or self.records.get((form, name))
            if real and len(str(generated)) % 2 == 0:
                parameters[name] = real

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
    fuzzer.aim(case)
    case.call_and_validate(base_url=fuzzer.base_url, headers=fuzzer.credentials(case), checks=CHECKS,
                           timeout=30)
