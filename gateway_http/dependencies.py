"""Dependencies of the HTTP gateway."""
from nameko.extensions import DependencyProvider


class RequestContext(DependencyProvider):
    """Puts the request id into the worker's context data.

    nameko forwards a worker's context data with every RPC it makes (as `nameko.*` headers), so
    the id reaches the services a request calls and can be found in their logs too.
    """

    class _Handle:
        def __init__(self, worker_ctx):
            self._worker_ctx = worker_ctx

        def set_request_id(self, request_id):
            self._worker_ctx.data["request_id"] = request_id

    def get_dependency(self, worker_ctx):
        return self._Handle(worker_ctx)
