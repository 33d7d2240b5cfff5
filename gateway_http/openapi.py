"""The OpenAPI 3 document, generated from the declared routes and their marshmallow schemas."""
from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from gateway_http.routing import ROUTES
from gateway_http.schemas import ErrorResponse, Health

ERROR_DESCRIPTIONS = {
    400: "Body is not JSON, or a webhook failed its signature or timestamp check",
    401: "No token, bad token, or revoked token",
    402: "The saved payment method declined the charge (e.g. a plan change's proration); nothing changed",
    403: "A member whose role lacks the permission",
    404: "Unknown resource, or one in an organization the caller is not a member of",
    409: "Conflict with the current state",
    413: "Body over the limit",
    422: "JSON that fails validation; details maps field -> messages",
    429: "Rate limited; see Retry-After",
    502: "The payment gateway failed or timed out; nothing half-done is left behind",
    503: "A service did not answer in time",
}


def _error_statuses(spec):
    statuses = {503}
    if spec.body is not None or spec.raw_body:
        statuses |= {400, 413}
    if spec.body is not None or spec.query is not None:  # a raw body says itself whether it answers 422
        statuses.add(422)
    if spec.auth:
        statuses.add(401)
    if spec.path_params:
        statuses.add(404)
    return sorted(statuses | set(spec.errors))


def _operation(spec):
    operation = {
        "operationId": spec.handler_name,
        "summary": spec.summary,
        "tags": [spec.tag],
        "responses": {},
    }
    parameters = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}} for name in spec.path_params
    ]
    if spec.query is not None:
        parameters.append({"in": "query", "schema": spec.query})
    parameters += [{"in": "header", "name": name, "required": True, "schema": {"type": "string"}}
                   for name in spec.signature_headers]
    if parameters:
        operation["parameters"] = parameters
    if spec.auth:
        operation["security"] = [{"bearerAuth": []}]
    elif spec.security:
        operation["security"] = [{spec.security: []}]
    body = spec.body or spec.documented_body
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    elif spec.signature_headers:  # the gateway's event, checked and read by its adapter
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    for status, schema in spec.responses.items():
        response = {"description": "Success" if status < 300 else "Answer"}
        if schema is not None:
            response["content"] = {"application/json": {"schema": schema}}
        operation["responses"][str(status)] = response
    for status in _error_statuses(spec):
        operation["responses"][str(status)] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ErrorResponse}},
        }
    return operation


@lru_cache(maxsize=1)
def openapi_document():
    api = APISpec(
        title="Billing portal API",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Plans, payments, payment links, usage and organizations. Money is integer "
                             "minor units plus a lower-case ISO 4217 currency."},
    )
    api.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.components.security_scheme("usageIngestKey", {"type": "http", "scheme": "bearer",
                                                      "description": "The USAGE_INGEST_KEY of this deployment"})
    api.components.schema("ErrorResponse", schema=ErrorResponse)
    paths = {}
    for spec in ROUTES:
        paths.setdefault(spec.openapi_path, {})[spec.method.lower()] = _operation(spec)
    paths["/healthz"] = {"get": {"operationId": "healthz", "summary": "Every service's health", "tags": ["operations"],
                                 "responses": {"200": {"description": "All answer",
                                                       "content": {"application/json": {"schema": Health}}},
                                               "503": {"description": "A service does not answer",
                                                       "content": {"application/json": {"schema": Health}}}}}}
    paths["/api/v1/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document",
                                             "tags": ["operations"],
                                             "responses": {"200": {"description": "OpenAPI 3 document"}}}}
    for path, operations in paths.items():
        api.path(path=path, operations=operations)
    return api.to_dict()
