"""usage: answers health pings until its issue builds it (see the issues list)."""
from shared.service import HealthMixin


class UsageService(HealthMixin):
    name = "usage"
