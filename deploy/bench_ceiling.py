"""The bare pieces the portal is made of, for `make bench`'s ceilings: nothing but nameko, on the
stack's broker, with the services' own nameko settings (shared.config), and no code of ours.

    python -m deploy.bench_ceiling echo          an RPC service: echo(value) -> value
    python -m deploy.bench_ceiling http PORT     HTTP: GET /constant (a constant JSON answer) and
                                                 GET /rpc (one echo call, as a route calling a service)
    python -m deploy.bench_ceiling rpc-client SECONDS CONCURRENCY
                                                 echo calls as fast as answered from CONCURRENCY green
                                                 threads (one standalone proxy each); prints JSON

The echo service runs in a process of its own, as every portal service does: a route of the
HTTP process waits for a worker of another process, never for one of its own.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from nameko.cli.run import run  # noqa: E402
from nameko.rpc import RpcProxy, rpc  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from nameko.web.handlers import http  # noqa: E402
from werkzeug.wrappers import Response  # noqa: E402

from shared.config import settings  # noqa: E402

ECHO = "bench_echo"


class EchoService:
    name = ECHO

    @rpc
    def echo(self, value):
        return value


class BareHttp:
    name = "bench_http"
    echo = RpcProxy(ECHO)

    @http("GET", "/constant")
    def constant(self, request):
        return Response('{"status": "ok"}', mimetype="application/json")

    @http("GET", "/rpc")
    def one_rpc(self, request):
        return Response(json.dumps({"status": self.echo.echo("ok")}), mimetype="application/json")


def rpc_client(seconds, concurrency):
    config = settings().nameko_config()
    latencies, deadline = [], time.perf_counter() + seconds

    def caller():
        with ClusterRpcProxy(config) as proxy:
            proxy[ECHO].echo("warm")
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                proxy[ECHO].echo("ok")
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    pool = eventlet.GreenPool(concurrency)
    for _ in range(concurrency):
        pool.spawn(caller)
    pool.waitall()
    elapsed = time.perf_counter() - started
    print(json.dumps({"calls": len(latencies), "seconds": elapsed, "latencies": latencies}))


def main(argv):
    logging.basicConfig(level=logging.WARNING)
    if argv[:1] == ["echo"]:
        run([EchoService], settings().nameko_config())
    elif argv[:1] == ["http"] and len(argv) == 2:
        run([BareHttp], settings().nameko_config(WEB_SERVER_ADDRESS=f"127.0.0.1:{int(argv[1])}"))
    elif argv[:1] == ["rpc-client"] and len(argv) == 3:
        rpc_client(float(argv[1]), int(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
