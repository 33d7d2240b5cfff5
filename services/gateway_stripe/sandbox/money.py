"""Showing integer minor units to people (descriptions, hosted pages) without floats."""

ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                "xaf", "xof", "xpf"}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "inr": "₹", "jpy": "¥"}


def format_amount(amount: int, currency: str) -> str:
    """2000 usd -> '$20.00'; -1500 usd -> '-$15.00'; unknown currencies get their code appended."""
    currency = currency.lower()
    sign = "-" if amount < 0 else ""
    if currency in ZERO_DECIMAL:
        number = f"{abs(amount):,}"
    else:
        major, minor = divmod(abs(amount), 100)
        number = f"{major:,}.{minor:02d}"
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"
