"""Stripe objects as the current API version (the SDK's pinned one) shapes them.

Every builder returns all the top-level keys Stripe's own fixtures have for that object
(../shared/reference/stripe/fixtures3.json; the unit tests compare the key sets), with real values
where the sandbox knows them and null / empty where it has nothing. Current-API facts worth
repeating: a subscription's period lives on its items; an invoice names its subscription under
`parent.subscription_details` (its top-level `subscription` stays null, as at Stripe since the
field moved); invoice lines carry `period` and `parent.subscription_item_details.proration`.
"""
import copy

import stripe

from .ids import random_token

API_VERSION = stripe.api_version  # what the SDK pins; every event says so

ACCOUNT_NAME = "Billing portal sandbox"  # what invoices and the account call the merchant
ACCOUNT_CREATED = 1704067200  # fixed, so the account reads the same from every sandbox run

_EMPTY_ADDRESS = {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


def list_object(data: list, url: str, has_more: bool = False) -> dict:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def customer(*, id, created, email, name, metadata, description=None, phone=None) -> dict:
    return {
        "id": id, "object": "customer", "address": None, "balance": 0, "created": created,
        "currency": None, "default_source": None, "delinquent": False, "description": description,
        "discount": None, "email": email, "invoice_prefix": random_token(8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": False, "metadata": metadata, "name": name, "next_invoice_sequence": 1, "phone": phone,
        "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
    }


def product(*, id, created, name, metadata, default_price=None, description=None) -> dict:
    return {
        "id": id, "object": "product", "active": True, "created": created, "default_price": default_price,
        "description": description, "images": [], "livemode": False, "marketing_features": [],
        "metadata": metadata, "name": name, "package_dimensions": None, "shippable": None,
        "statement_descriptor": None, "tax_code": None, "type": "service", "unit_label": None,
        "updated": created, "url": None,
    }


def price(*, id, created, currency, unit_amount, recurring, product_id, lookup_key, metadata,
          nickname=None) -> dict:
    if recurring is not None:
        recurring = {"interval": recurring["interval"], "interval_count": recurring.get("interval_count", 1),
                     "meter": None, "trial_period_days": None, "usage_type": "licensed"}
    return {
        "id": id, "object": "price", "active": True, "billing_scheme": "per_unit", "created": created,
        "currency": currency, "custom_unit_amount": None, "livemode": False, "lookup_key": lookup_key,
        "metadata": metadata, "nickname": nickname, "product": product_id, "recurring": recurring,
        "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
        "type": "recurring" if recurring else "one_time", "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def plan_from_price(price_obj: dict) -> dict:
    """The legacy `plan` Stripe still puts on subscription items, mirroring the price."""
    recurring = price_obj["recurring"] or {}
    return {
        "id": price_obj["id"], "object": "plan", "active": price_obj["active"], "amount": price_obj["unit_amount"],
        "amount_decimal": price_obj["unit_amount_decimal"], "billing_scheme": "per_unit",
        "created": price_obj["created"], "currency": price_obj["currency"], "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1), "livemode": False,
        "metadata": copy.deepcopy(price_obj["metadata"]), "meter": None, "nickname": price_obj["nickname"],
        "product": price_obj["product"], "tiers_mode": None, "transform_usage": None,
        "trial_period_days": None, "usage_type": "licensed",
    }


def checkout_session(*, id, created, expires_at, url, customer_id, customer_email, success_url, cancel_url,
                     client_reference_id, metadata, currency, amount_total, payment_link=None) -> dict:
    return {
        "id": id, "object": "checkout.session", "adaptive_pricing": None, "after_expiration": None,
        "allow_promotion_codes": None, "amount_subtotal": amount_total, "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None, "cancel_url": cancel_url, "client_reference_id": client_reference_id,
        "client_secret": None, "collected_information": None, "consent": None, "consent_collection": None,
        "created": created, "currency": currency, "currency_conversion": None, "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                        "terms_of_service_acceptance": None},
        "customer": customer_id, "customer_account": None,
        "customer_creation": None if customer_id else "always", "customer_details": None,
        "customer_email": customer_email, "discounts": [], "expires_at": expires_at,
        "integration_identifier": None, "invoice": None, "invoice_creation": None, "livemode": False,
        "locale": None, "managed_payments": None, "metadata": metadata, "mode": "subscription",
        "origin_context": None, "payment_intent": None, "payment_link": payment_link,
        "payment_method_collection": "always", "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "payment_status": "unpaid", "permissions": None,
        "phone_number_collection": {"enabled": False}, "recovered_from": None,
        "saved_payment_method_options": {"allow_redisplay_filters": ["always"], "payment_method_remove": None,
                                         "payment_method_save": None},
        "setup_intent": None, "shipping_address_collection": None, "shipping_cost": None,
        "shipping_options": [], "status": "open", "submit_type": None, "subscription": None,
        "success_url": success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted", "url": url, "wallet_options": None,
    }


def payment_link(*, id, url, currency, metadata, subscription_metadata, subscription_description, limit,
                 redirect_url, custom_message, inactive_message) -> dict:
    """A Payment Link in subscription mode (its price is recurring). Payment links have no `created`,
    and their line items are not embedded (Stripe lists them at /v1/payment_links/{id}/line_items)."""
    if redirect_url is not None:
        after_completion = {"type": "redirect", "redirect": {"url": redirect_url}}
    else:
        after_completion = {"type": "hosted_confirmation", "hosted_confirmation": {"custom_message": custom_message}}
    return {
        "id": id, "object": "payment_link", "active": True, "after_completion": after_completion,
        "allow_promotion_codes": False, "application": None, "application_fee_amount": None,
        "application_fee_percent": None, "automatic_tax": {"enabled": False, "liability": None},
        "billing_address_collection": "auto", "consent_collection": None, "currency": currency,
        "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                        "terms_of_service_acceptance": None},
        "customer_creation": "if_required", "inactive_message": inactive_message,
        "invoice_creation": None, "livemode": False, "managed_payments": None, "metadata": metadata,
        "on_behalf_of": None, "payment_intent_data": None, "payment_method_collection": "always",
        "payment_method_options": None, "payment_method_types": None, "phone_number_collection": {"enabled": False},
        "restrictions": {"completed_sessions": {"count": 0, "limit": limit}} if limit is not None else None,
        "shipping_address_collection": None, "shipping_options": [], "submit_type": "auto",
        "subscription_data": {"description": subscription_description,
                              "invoice_settings": {"issuer": {"type": "self"}},
                              "metadata": subscription_metadata, "trial_period_days": None,
                              "trial_settings": None},
        "tax_id_collection": {"enabled": False, "required": "never"}, "transfer_data": None, "url": url,
    }


def customer_details(customer_obj: dict) -> dict:
    """What Checkout collected from the payer, as the completed session reports it."""
    return {"address": dict(_EMPTY_ADDRESS), "business_name": None, "email": customer_obj["email"],
            "individual_name": None, "name": customer_obj["name"], "phone": None, "tax_exempt": "none",
            "tax_ids": []}


def subscription_item(*, id, created, subscription_id, price_obj, quantity, period_start, period_end) -> dict:
    return {
        "id": id, "object": "subscription_item", "billing_thresholds": None, "created": created,
        "current_period_end": period_end, "current_period_start": period_start, "discounts": [],
        "metadata": {}, "plan": plan_from_price(price_obj), "price": copy.deepcopy(price_obj),
        "quantity": quantity, "subscription": subscription_id, "tax_rates": [],
    }


def subscription(*, id, created, customer_id, currency, metadata, default_payment_method, item) -> dict:
    return {
        "id": id, "object": "subscription", "application": None, "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": created, "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "classic", "flexible": None}, "billing_schedules": [],
        "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": created, "currency": currency,
        "customer": customer_id, "customer_account": None, "days_until_due": None,
        "default_payment_method": default_payment_method, "default_source": None, "default_tax_rates": [],
        "description": None, "discounts": [], "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "custom_fields": None, "description": None,
                             "footer": None, "issuer": {"type": "self"}},
        "items": list_object([item], f"/v1/subscription_items?subscription={id}"),
        "latest_invoice": None, "livemode": False, "managed_payments": None, "metadata": metadata,
        "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
        "schedule": None, "start_date": created, "status": "active", "test_clock": None, "transfer_data": None,
        "trial_end": None, "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def line_item(*, id, invoice_id, amount, currency, description, period_start, period_end, price_obj,
              quantity, proration, subscription_id, subscription_item_id, credited_items=None) -> dict:
    return {
        "id": id, "object": "line_item", "amount": amount, "currency": currency, "description": description,
        "discount_amounts": [], "discountable": not proration, "discounts": [], "invoice": invoice_id,
        "livemode": False, "metadata": {},
        "parent": {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None, "proration": proration,
                "proration_details": {"credited_items": credited_items},
                "subscription": subscription_id, "subscription_item": subscription_item_id,
            },
        },
        "period": {"end": period_end, "start": period_start},
        "pretax_credit_amounts": [],
        "pricing": {"type": "price_details",
                    "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
                    "unit_amount_decimal": price_obj["unit_amount_decimal"]},
        "quantity": quantity, "quantity_decimal": str(quantity), "subscription": subscription_id,
        "subtotal": amount, "taxes": [],
    }


def invoice(*, id, created, customer_obj, currency, lines, billing_reason, subscription_id,
            subscription_metadata, period_start, period_end, hosted_url, number) -> dict:
    """A finalized invoice, still unpaid (amounts are settled by invoices.settle)."""
    subtotal = sum(line["amount"] for line in lines)
    return {
        "id": id, "object": "invoice", "account_country": "US", "account_name": ACCOUNT_NAME,
        "account_tax_ids": None, "amount_due": subtotal, "amount_overpaid": 0, "amount_paid": 0,
        "amount_remaining": subtotal, "amount_shipping": 0, "application": None, "attempt_count": 0,
        "attempted": False, "auto_advance": True,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": None, "billing_reason": billing_reason,
        "collection_method": "charge_automatically", "created": created, "currency": currency,
        "custom_fields": None, "customer": customer_obj["id"], "customer_account": None,
        "customer_address": None, "customer_email": customer_obj["email"], "customer_name": customer_obj["name"],
        "customer_phone": customer_obj["phone"], "customer_shipping": None, "customer_tax_exempt": "none",
        "customer_tax_ids": [], "default_payment_method": None, "default_source": None, "default_tax_rates": [],
        "description": None, "discounts": [], "due_date": None, "effective_at": created,
        "ending_balance": None, "footer": None, "from_invoice": None, "hosted_invoice_url": hosted_url,
        "invoice_pdf": None, "issuer": {"type": "self"}, "last_finalization_error": None,
        "latest_revision": None, "lines": list_object(lines, f"/v1/invoices/{id}/lines"), "livemode": False,
        "metadata": {}, "next_payment_attempt": None, "number": number, "on_behalf_of": None,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": copy.deepcopy(subscription_metadata),
                                     "subscription": subscription_id},
        },
        "payment_settings": {"default_mandate": None, "payment_method_options": None,
                             "payment_method_types": None},
        "period_end": period_end, "period_start": period_start, "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "receipt_number": None,
        "rendering": {"amount_tax_display": None, "pdf": {"page_size": "auto"}, "template": None,
                      "template_version": None},
        "shipping_cost": None, "shipping_details": None, "starting_balance": 0, "statement_descriptor": None,
        "status": "open",
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "subscription": None, "subtotal": subtotal, "subtotal_excluding_tax": subtotal, "test_clock": None,
        "total": subtotal, "total_discount_amounts": [], "total_excluding_tax": subtotal,
        "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": None,
    }


def payment_method(*, id, created, customer_obj, exp_year) -> dict:
    """The test card every sandbox payer uses: Visa 4242."""
    return {
        "id": id, "object": "payment_method", "allow_redisplay": "always",
        "billing_details": {"address": dict(_EMPTY_ADDRESS), "email": customer_obj["email"],
                            "name": customer_obj["name"], "phone": None, "tax_id": None},
        "card": {
            "brand": "visa", "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                        "cvc_check": "pass"},
            "country": "US", "display_brand": "visa", "exp_month": 12, "exp_year": exp_year,
            "fingerprint": random_token(16), "funding": "credit", "generated_from": None, "last4": "4242",
            "networks": {"available": ["visa"], "preferred": None},
            "regulated_status": "unregulated", "three_d_secure_usage": {"supported": True}, "wallet": None,
        },
        "created": created, "customer": customer_obj["id"], "customer_account": None, "livemode": False,
        "metadata": {}, "type": "card",
    }


def event(*, id, created, type_, obj, previous_attributes, request, pending_webhooks) -> dict:
    data = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": id, "object": "event", "api_version": API_VERSION, "created": created, "data": data,
        "livemode": False, "pending_webhooks": pending_webhooks, "request": request, "type": type_,
    }


def payment_intent(*, id, created, amount, currency, customer_id, description) -> dict:
    """The PaymentIntent Stripe makes to collect an invoice: no payment tried yet, nothing received."""
    return {
        "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_details": {"tip": {}}, "amount_received": 0, "application": None, "application_fee_amount": None,
        "automatic_payment_methods": None, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic", "client_secret": f"{id}_secret_{random_token(25)}",
        "confirmation_method": "automatic", "created": created, "currency": currency, "customer": customer_id,
        "customer_account": None, "description": description, "excluded_payment_method_types": None,
        "last_payment_error": None, "latest_charge": None, "livemode": False, "managed_payments": None,
        "metadata": {}, "next_action": None, "on_behalf_of": None, "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"installments": None, "mandate_options": None, "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
        "setup_future_usage": None, "shipping": None, "source": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "requires_payment_method", "transfer_data": None,
        "transfer_group": None,
    }


DECLINE = {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}


def card_decline_error(*, charge_id, method: dict) -> dict:
    """A PaymentIntent's `last_payment_error` after the card was declined off-session."""
    return {"charge": charge_id, "code": DECLINE["code"], "decline_code": DECLINE["decline_code"],
            "doc_url": "https://stripe.com/docs/error-codes/card-declined", "message": DECLINE["message"],
            "payment_method": copy.deepcopy(method), "type": "card_error"}


def charge(*, id, created, amount, currency, customer_id, description, payment_intent_id, method, succeeded) -> dict:
    """One attempt to take a PaymentIntent's amount from a saved card: succeeded, or declined."""
    card = (method or {}).get("card") or {}
    if succeeded:
        outcome = {"network_status": "approved_by_network", "reason": None, "seller_message": "Payment complete.",
                   "type": "authorized"}
    else:
        outcome = {"network_status": "declined_by_network", "reason": DECLINE["decline_code"],
                   "seller_message": "The bank did not return any further details with this decline.",
                   "type": "issuer_declined"}
    return {
        "id": id, "object": "charge", "amount": amount, "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0, "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": new_txn_id() if succeeded else None,
        "billing_details": copy.deepcopy(method["billing_details"]) if method else {
            "address": dict(_EMPTY_ADDRESS), "email": None, "name": None, "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "BILLING PORTAL", "captured": succeeded, "created": created,
        "currency": currency, "customer": customer_id, "description": description, "disputed": False,
        "failure_balance_transaction": None, "failure_code": None if succeeded else DECLINE["code"],
        "failure_message": None if succeeded else DECLINE["message"], "fraud_details": {}, "livemode": False,
        "metadata": {}, "on_behalf_of": None,
        "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None, **outcome},
        "paid": succeeded, "payment_intent": payment_intent_id, "payment_method": method["id"] if method else None,
        "payment_method_details": {"type": "card", "card": {
            "amount_authorized": amount if succeeded else None, "authorization_code": None,
            "brand": card.get("brand"), "checks": copy.deepcopy(card.get("checks")), "country": card.get("country"),
            "exp_month": card.get("exp_month"), "exp_year": card.get("exp_year"),
            "extended_authorization": {"status": "disabled"}, "fingerprint": card.get("fingerprint"),
            "funding": card.get("funding"), "incremental_authorization": {"status": "unavailable"},
            "installments": None, "last4": card.get("last4"), "mandate": None,
            "multicapture": {"status": "unavailable"}, "network": card.get("brand"),
            "network_token": {"used": False}, "network_transaction_id": None,
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": card.get("regulated_status"), "three_d_secure": None,
            "transaction_link_id": None, "wallet": None,
        }} if method else None,
        "receipt_email": None, "receipt_number": None, "receipt_url": None, "refunded": False,
        "refunds": list_object([], f"/v1/charges/{id}/refunds"), "review": None, "shipping": None, "source": None,
        "source_transfer": None, "statement_descriptor": None, "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "failed", "transfer_data": None, "transfer_group": None,
    }


def invoice_payment(*, id, created, invoice_id, amount_requested, currency, payment_intent_id) -> dict:
    """How an invoice is paid in the current API: its payment (a PaymentIntent), open until it succeeds."""
    return {
        "id": id, "object": "invoice_payment", "amount_paid": None, "amount_requested": amount_requested,
        "created": created, "currency": currency, "invoice": invoice_id, "is_default": True, "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent_id}, "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def refund(*, id, created, amount, charge_obj, reason, metadata) -> dict:
    """A refund to a card, settled at once as in test mode."""
    return {
        "id": id, "object": "refund", "amount": amount, "balance_transaction": new_txn_id(),
        "charge": charge_obj["id"], "created": created, "currency": charge_obj["currency"],
        "customer": charge_obj["customer"], "customer_account": None,
        "destination_details": {"type": "card", "card": {"reference": None, "reference_status": "pending",
                                                         "reference_type": "acquirer_reference_number",
                                                         "type": "refund"}},
        "metadata": metadata, "payment_intent": charge_obj["payment_intent"],
        "payment_method": charge_obj["payment_method"], "reason": reason, "receipt_number": None,
        "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None,
    }


def pending_update(*, expires_at, subscription_items, billing_cycle_anchor, metadata, cancel_at_period_end) -> dict:
    """What a subscription update waiting for its invoice's payment would change (`pending_update`)."""
    return {"billing_cycle_anchor": billing_cycle_anchor, "cancel_at_period_end": cancel_at_period_end,
            "discount": None, "discounts": None, "expires_at": expires_at, "metadata": metadata,
            "subscription_items": subscription_items, "trial_end": None, "trial_from_plan": None}


def account(*, id) -> dict:
    """The sandbox's own Stripe account (GET /v1/account): a US standard account, fully set up."""
    no_requirements = {"alternatives": [], "current_deadline": None, "currently_due": [], "disabled_reason": None,
                       "errors": [], "eventually_due": [], "past_due": [], "pending_verification": []}
    return {
        "id": id, "object": "account",
        "business_profile": {
            "annual_revenue": None, "estimated_worker_count": None, "mcc": "5734",
            "minority_owned_business_designation": None, "name": ACCOUNT_NAME, "product_description": None,
            "support_address": None, "support_email": None, "support_phone": None, "support_url": None, "url": None},
        "business_type": "company", "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True, "controller": {"type": "account"}, "country": "US", "created": ACCOUNT_CREATED,
        "default_currency": "usd", "details_submitted": True, "email": "billing@example.com",
        "external_accounts": list_object([], f"/v1/accounts/{id}/external_accounts"),
        "future_requirements": copy.deepcopy(no_requirements), "metadata": {}, "payouts_enabled": True,
        "requirements": copy.deepcopy(no_requirements),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                              "statement_descriptor_prefix": None, "statement_descriptor_prefix_kana": None,
                              "statement_descriptor_prefix_kanji": None},
            "dashboard": {"display_name": ACCOUNT_NAME, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
            "payments": {"statement_descriptor": "BILLING PORTAL", "statement_descriptor_kana": None,
                         "statement_descriptor_kanji": None, "statement_descriptor_prefix_kana": None,
                         "statement_descriptor_prefix_kanji": None},
            "payouts": {"debit_negative_balances": True, "schedule": {"delay_days": 2, "interval": "daily"},
                        "statement_descriptor": None},
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": ACCOUNT_CREATED, "ip": "127.0.0.1", "user_agent": None},
        "type": "standard",
    }


def new_txn_id() -> str:
    return "txn_" + random_token(24)
