"""Run one service in its own process:  python -m shared.runner <name>

Names: identity, orgs, billing, gateway_stripe, gateway_cashfree, usage, usage_ingest, gateway_http.
Configuration comes from the environment (shared.config); SIGTERM stops the service gracefully
(in-flight workers finish), a second signal kills it.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402  (before anything opens a socket)

import gc  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from nameko.cli.run import run  # noqa: E402

from shared.config import MissingSecrets, check_secrets, settings  # noqa: E402

SERVICE_CLASSES = {
    "identity": "services.identity.service:IdentityService",
    "orgs": "services.orgs.service:OrgsService",
    "billing": "services.billing.service:BillingService",
    "gateway_stripe": "services.gateway_stripe.service:GatewayStripeService",
    "gateway_cashfree": "services.gateway_cashfree.service:GatewayCashfreeService",
    "usage": "services.usage.service:UsageService",
    "usage_ingest": "services.usage.ingest:UsageIngestService",
    "gateway_http": "gateway_http.service:HttpGateway",
}


# Workers per process where the default (10) is wrong. A usage batch is CPU work; two in flight keep
# the database busy while leaving CPU for everything latency-bound (reads); the batches beyond two
# wait in RabbitMQ, which costs nothing.
MAX_WORKERS = {"usage_ingest": 2}


def service_class(name):
    module_name, class_name = SERVICE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


class ExpectedErrorsInOneLine(logging.Filter):
    """nameko logs every expected outcome (a 404, a 409...) with a full traceback; one line says it."""

    def filter(self, record):
        if record.name == "nameko.containers" and str(record.msg).startswith("(expected)"):
            record.exc_info, record.exc_text = None, None
        return True


def main(argv):
    if len(argv) != 1 or argv[0] not in SERVICE_CLASSES:
        sys.exit(f"usage: python -m shared.runner {{{'|'.join(SERVICE_CLASSES)}}}")
    try:
        check_secrets()
    except MissingSecrets as missing:  # one line on stderr, exit status 1: supervisord's log says why
        sys.exit(f"{argv[0]} refuses to start: {missing}")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {argv[0]} %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ExpectedErrorsInOneLine())
    # eventlet's access line repeats gateway_http's own (which also names the request id), and each
    # line costs CPU on the request path (make bench's profile: 8-14 % of gateway_http's).
    logging.getLogger("nameko.web.server").setLevel(logging.WARNING)
    service = service_class(argv[0])
    # Everything imported so far lives as long as the process: frozen, it is never scanned again. A
    # full collection otherwise walks all of it (SQLAlchemy, nameko, marshmallow...), 20-40 ms in
    # which the process answers nothing: the slowest 1 % of reads.
    gc.collect()
    gc.freeze()
    run([service], settings().nameko_config(**(
        {"max_workers": MAX_WORKERS[argv[0]]} if argv[0] in MAX_WORKERS else {})))


if __name__ == "__main__":
    main(sys.argv[1:])
