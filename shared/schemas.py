"""Schema pieces reused across services' boundary schemas."""
import decimal
import json
import math
import sys

from marshmallow import Schema, ValidationError, fields, validate

from shared.emails import EMAIL_KEY_MAX_LENGTH, email_key
from shared.errors import BadRequest, ValidationFailed
from shared.events import COUNTRIES


class TrimmedEmail(fields.Email):
    """An email address; surrounding spaces (a paste from a mail client) are not an error. One whose
    comparison key (shared.emails) would not fit where keys are kept is not a valid address."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(email_key(value)) > EMAIL_KEY_MAX_LENGTH:
            raise self.make_error("invalid")
        return value


class TrimmedString(fields.String):
    """Text whose surrounding spaces are dropped before validation ("   " is then empty)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class Principal(Schema):
    """The signed-in user as gateway_http hands it to services (identity.authenticate_session's, maybe cached)."""

    id = fields.String(required=True)
    email = fields.Email(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    phone = fields.String(allow_none=True)
    created_at = fields.String()


NUL_REFUSED = "Must not contain the NUL character."


def fields_with_nul(data):
    """Top-level fields whose value holds a NUL character somewhere: valid JSON, but PostgreSQL's
    text cannot store it, so it is refused at the boundary (422) instead of failing in a query (500)."""
    def holds_nul(value):
        if isinstance(value, str):
            return "\x00" in value
        if isinstance(value, dict):
            return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return any(holds_nul(item) for item in value)
        return False

    if isinstance(data, dict):
        return sorted(str(key) for key, value in data.items() if holds_nul(key) or holds_nul(value))
    return ["_schema"] if holds_nul(data) else []


def load_or_raise(schema, data):
    """schema.load, with marshmallow's errors turned into the shared ValidationFailed (422)."""
    refused = fields_with_nul(data)
    if refused:
        raise ValidationFailed(details={name: [NUL_REFUSED] for name in refused})
    try:
        return schema.load(data)
    except ValidationError as err:
        details = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        raise ValidationFailed(details=details) from None


def malformed_json(position=None, reason=None):
    """The error for a body that is not JSON (or not UTF-8), with where parsing stopped if known,
    and why when it is JSON that this portal does not take."""
    return BadRequest(f"The body is not valid JSON: {reason}." if reason else "The body is not valid JSON.",
                      details={"position": position, **({"reason": reason} if reason else {})},
                      code="MALFORMED_JSON")


# Arrays and objects inside one another. The API's bodies nest 3 deep, Stripe's events about 11;
# deeper would only feed code that recurses over a body (the NUL check, schemas, encoders) until it
# fails with RecursionError.
MAX_JSON_DEPTH = 32


class _Refused(ValueError):
    """Valid to Python's parser, not JSON this portal takes; the message says why."""


def _refuse_constant(name):
    # Python's parser takes NaN, Infinity and -Infinity; JSON (RFC 8259) has no such numbers, and no
    # schema, column or encoder here expects them (PostgreSQL's JSON refuses them: a 500 later).
    raise _Refused(f"{name} is not a JSON number")


FLOAT_MAX_EXPONENT = sys.float_info.max_10_exp


def _finite_float(text):
    value = float(text)
    if math.isinf(value):  # 1e400: Infinity spelled as a number
        raise _Refused("a number too large")
    return value


def _exact_decimal(text):
    value = decimal.Decimal(text)
    if value.adjusted() > FLOAT_MAX_EXPONENT:  # refused as a float would be, whichever the parser
        raise _Refused("a number too large")
    return value


def nested_deeper_than(value, limit):
    """Whether arrays and objects in `value` nest more than `limit` deep (a level at a time: no recursion)."""
    level = [value]
    for _ in range(limit + 1):
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return False
        level = [child for container in containers
                 for child in (container.values() if isinstance(container, dict) else container)]
    return True


def parse_json(raw, max_depth=MAX_JSON_DEPTH, exact_decimals=False):
    """A JSON body (bytes or text) -> its value; {} for an empty body. The one JSON parser of what
    arrives from outside, and a strict one: BadRequest MALFORMED_JSON for a body that is not UTF-8
    JSON, and for what Python's parser would take but is not JSON here: NaN, Infinity, a number too
    large for a float, an integer longer than Python converts (4300 digits), arrays and objects
    nested deeper than `max_depth` (None: as deep as the parser itself goes, a thousand or so).
    `exact_decimals`: numbers with a fraction as Decimal (a gateway's amounts), not float."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_constant=_refuse_constant,
                           parse_float=_exact_decimal if exact_decimals else _finite_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed_json(getattr(exc, "pos", None)) from None
    except _Refused as refused:
        raise malformed_json(reason=str(refused)) from None
    except ValueError:  # int()'s digit limit
        raise malformed_json(reason=f"an integer of more than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise malformed_json(reason="arrays and objects nested too deeply") from None
    if max_depth is not None and nested_deeper_than(value, max_depth):
        raise malformed_json(reason=f"arrays and objects nested more than {max_depth} deep")
    return value
