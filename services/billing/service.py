"""billing: the plan catalogue (accounts, quotes, checkouts and subscriptions come with the billing issue)."""
from services.billing.catalogue import load_catalogue, priced_plan
from shared.errors import ValidationFailed
from shared.events import COUNTRIES
from shared.service import HealthMixin, api_rpc


class BillingService(HealthMixin):
    name = "billing"

    @api_rpc
    def list_plans(self, country):
        """Every plan priced for `country` ("US" -> usd, "IN" -> inr)."""
        if country not in COUNTRIES:
            raise ValidationFailed(details={"country": [f"Must be one of: {', '.join(COUNTRIES)}."]})
        return [priced_plan(plan, country) for plan in load_catalogue().values()]

    @api_rpc
    def get_plan(self, code):
        """The catalogue entry for `code` (all prices), or None."""
        return load_catalogue().get(code)
