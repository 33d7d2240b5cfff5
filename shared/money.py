"""Money as integer minor units plus an ISO 4217 currency (lower case). Never a float."""
from dataclasses import dataclass
from decimal import Decimal

# Minor units per major unit; both currencies the portal sells in have two decimals.
MINOR_UNIT_EXPONENT = {"usd": 2, "inr": 2}
CURRENCY_BY_COUNTRY = {"US": "usd", "IN": "inr"}


class CurrencyMismatch(ValueError):
    pass


def check_currency(currency):
    currency = currency.lower()
    if currency not in MINOR_UNIT_EXPONENT:
        raise ValueError(f"unsupported currency {currency!r}")
    return currency


@dataclass(frozen=True, order=True)
class Money:
    amount: int  # minor units (cents, paise)
    currency: str

    def __post_init__(self):
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int of minor units")
        object.__setattr__(self, "currency", check_currency(self.currency))

    @classmethod
    def from_major(cls, major, currency):
        """'12.34' usd -> Money(1234, 'usd'). Accepts str/int/Decimal, refuses floats and sub-minor digits."""
        if isinstance(major, float):
            raise TypeError("use a string or Decimal, not a float")
        currency = check_currency(currency)
        scaled = Decimal(str(major)).scaleb(MINOR_UNIT_EXPONENT[currency])
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{major} has more precision than {currency} allows")
        return cls(int(scaled), currency)

    def _same(self, other):
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} vs {other.currency}")
        return other

    def __add__(self, other):
        other = self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other):
        other = self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self):
        return Money(-self.amount, self.currency)

    def prorate(self, numerator, denominator):
        """This amount times numerator/denominator, rounded half up to a whole minor unit."""
        if denominator <= 0:
            raise ValueError("denominator must be positive")
        quotient = Decimal(self.amount) * Decimal(numerator) / Decimal(denominator)
        return Money(int(quotient.to_integral_value(rounding="ROUND_HALF_UP")), self.currency)

    def to_major(self) -> Decimal:
        """1234 usd -> Decimal('12.34'): for a gateway that takes major units (Cashfree's rupees)."""
        return Decimal(self.amount).scaleb(-MINOR_UNIT_EXPONENT[self.currency])

    def format(self):
        """Human text, e.g. '$12.34' or '₹1,499.00'."""
        symbol = {"usd": "$", "inr": "₹"}[self.currency]
        major = self.to_major()
        sign = "-" if major < 0 else ""
        return f"{sign}{symbol}{abs(major):,.2f}"

    def to_dict(self):
        return {"amount": self.amount, "currency": self.currency}
