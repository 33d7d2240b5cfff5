"""GET /_sandbox/timings: both sandboxes say how long they took over each request they served."""
import pytest
import requests

from services.gateway_cashfree.sandbox import start_sandbox as start_cashfree
from services.gateway_stripe.sandbox import start_sandbox as start_stripe


@pytest.fixture(params=["stripe", "cashfree"])
def sandbox(request):
    handle = (start_stripe if request.param == "stripe" else start_cashfree)(port=0)
    yield request.param, handle
    handle.stop()


def api_call(gateway, handle):
    """One request of the gateway's API: (method, path)."""
    if gateway == "stripe":
        answer = requests.post(f"{handle.url}/v1/customers", data={"email": "ann@example.com"}, timeout=5,
                               headers={"Authorization": "Bearer sk_test_sandbox"})
    else:
        answer = requests.get(f"{handle.url}/pg/plans/no_such_plan", timeout=5, headers={
            "x-client-id": "cf_sandbox_client", "x-client-secret": "cf_sandbox_secret",
            "x-api-version": "2025-01-01"})
    return answer.request.method, answer.request.path_url


def timings(handle):
    return requests.get(f"{handle.url}/_sandbox/timings", timeout=5).json()


def test_each_request_served_is_timed_until_cleared(sandbox):
    gateway, handle = sandbox
    first, second = api_call(gateway, handle), api_call(gateway, handle)

    served = timings(handle)
    assert [(t["method"], t["path"]) for t in served] == [first, second]
    assert all(isinstance(t["ms"], float) and t["ms"] >= 0 for t in served)

    assert requests.delete(f"{handle.url}/_sandbox/timings", timeout=5).status_code == 200
    assert [t for t in timings(handle) if t["path"] != "/_sandbox/timings"] == []
