"""Cashfree's own OpenAPI document (version 2025-01-01) as the judge of every request body.

The document is big (about 1 MB of YAML), so it is parsed once per process (with libyaml when
available) and its schemas are compiled into validators lazily, one per operation. `$ref`s are
resolved through a `referencing` registry holding the whole document, and validation uses the
OpenAPI 3.0 dialect (`nullable`, `format: float64` ...). Amounts arrive as Decimals, which the
validator counts as numbers.

When the file is absent the sandbox runs without it (a warning is logged): only the handlers'
own checks then stand between a malformed body and the store.
"""
import copy
import logging
import os
import threading
from functools import lru_cache
from typing import List, Optional

import yaml
from jsonschema.exceptions import ValidationError, best_match
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource, Specification

from .errors import CashfreeError, invalid_value, missing

log = logging.getLogger(__name__)

BASE_URI = "urn:cashfree:pg:openapi-2025-01-01"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Contract:
    """The operations of one OpenAPI document, with their request body validators."""

    def __init__(self, document: dict, source: str = "<memory>"):
        self.document = document
        self.source = source
        resource = Resource(contents=document, specification=Specification.OPAQUE)
        self.registry = Registry().with_resource(BASE_URI, resource)
        self._validators: dict = {}
        self._lock = threading.Lock()

    def operation(self, method: str, template: str) -> Optional[dict]:
        return (self.document.get("paths", {}).get(template) or {}).get(method.lower())

    def request_validator(self, method: str, template: str):
        """The validator of an operation's JSON request body, or None when it takes none."""
        def build():
            operation = self.operation(method, template)
            body = operation and operation.get("requestBody")
            if not body:
                return None
            body = self.resolve(body)
            schema = (body.get("content") or {}).get("application/json", {}).get("schema")
            return self._compile(schema) if schema else None
        return self._cached(("request", method.upper(), template), build)

    def resolve(self, node: dict) -> dict:
        """Follow a local `$ref` (a requestBody or response defined under components)."""
        while isinstance(node, dict) and "$ref" in node:
            target = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def request_errors(self, method: str, template: str, body) -> List[ValidationError]:
        validator = self.request_validator(method, template)
        if validator is None:
            return []
        return sorted(validator.iter_errors(body), key=lambda error: [str(part) for part in error.absolute_path])

    def check_request(self, method: str, template: str, body) -> None:
        """Raise the 400 Cashfree would answer for the most relevant problem, carrying every
        problem's description in `.problems` (for GET /_sandbox/requests)."""
        errors = self.request_errors(method, template, body)
        if not errors:
            return
        problem = as_cashfree_error(best_match(errors))
        problem.problems = [describe(error) for error in errors]
        raise problem

    def _compile(self, schema: dict):
        return OAS30Validator(_absolute_refs(schema), registry=self.registry)

    def _cached(self, key, build):
        with self._lock:
            if key not in self._validators:
                self._validators[key] = build()
            return self._validators[key]


def field_name(error: ValidationError, leaf: Optional[str] = None) -> str:
    parts = [str(part) for part in error.absolute_path] + ([leaf] if leaf else [])
    return ".".join(parts) if parts else "request_body"


def _missing_properties(error: ValidationError) -> List[str]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [name for name in error.validator_value if name not in instance]


def as_cashfree_error(error: ValidationError) -> CashfreeError:
    if error.validator == "required":
        names = _missing_properties(error) or list(error.validator_value)
        return missing(field_name(error, names[0]))
    if error.validator == "type":
        return invalid_value(field_name(error), f"Expected {error.validator_value}")
    if error.validator in ("maxLength", "minLength", "maximum", "minimum", "enum", "pattern"):
        return invalid_value(field_name(error), f"Must satisfy {error.validator}: {error.validator_value}")
    return invalid_value(field_name(error), error.message)


def describe(error: ValidationError) -> str:
    return f"{field_name(error)}: {error.message}"


def _absolute_refs(schema):
    """A copy of a schema cut out of the document, its `#/...` refs made absolute (registry URI)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                node["$ref"] = BASE_URI + ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@lru_cache(maxsize=4)
def _load(path: str) -> Contract:
    with open(path, "rb") as handle:
        document = yaml.load(handle, Loader=_Loader)
    return Contract(document, source=path)


def load(path: Optional[str]) -> Optional[Contract]:
    """The contract at `path` (parsed once per process), or None with a warning when absent."""
    if not path or not os.path.isfile(path):
        log.warning("Cashfree OpenAPI document not found at %s: request bodies are NOT validated against it", path)
        return None
    return _load(os.path.abspath(path))
