"""Rupee amounts: exact Decimals with at most two decimals (paise), and how a payer reads them."""
from decimal import Decimal

from .errors import invalid_value

PAISA = Decimal("0.01")


def amount(value, field: str, *, positive: bool = True) -> Decimal:
    """A request's amount as a Decimal quantized to paise; 400 naming `field` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise invalid_value(field, "Expected a number")
    value = Decimal(value)
    if not value.is_finite():
        raise invalid_value(field, "Expected a number")
    if value.normalize().as_tuple().exponent < -2:
        raise invalid_value(field, "At most two decimal places are allowed")
    if value < 0 or (positive and value == 0):
        raise invalid_value(field, "Amount must be greater than 0" if positive else "Amount must not be negative")
    return value.quantize(PAISA)


def format_inr(value: Decimal) -> str:
    """Decimal('149999.5') -> '₹1,49,999.50': Indian digit grouping (lakh, crore)."""
    value = Decimal(value).quantize(PAISA)
    sign = "-" if value < 0 else ""
    rupees, paise = f"{abs(value):.2f}".split(".")
    if len(rupees) > 3:
        head, tail = rupees[:-3], rupees[-3:]
        groups = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        rupees = ",".join(groups + [tail])
    return f"{sign}₹{rupees}.{paise}"
