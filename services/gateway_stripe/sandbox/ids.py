"""Random object ids shaped like Stripe's (prefix + base62), so code that checks prefixes works."""
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

# Lengths after the prefix, as Stripe's ids have them (cs_test_ ids are long, customers short).
_LENGTHS = {"cs_test": 58, "cus": 14, "prod": 14, "si": 14, "pm": 24, "evt": 24, "req": 14}


def new_id(prefix: str) -> str:
    length = _LENGTHS.get(prefix, 24)
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def random_token(length: int = 16) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
