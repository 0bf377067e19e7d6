"""The gRPC adapter: ``proto.SessionService`` (wire-compatible with the original platform's) on port 50052.

* ``servicer``: ``SessionServicer`` and the server (``create_grpc_server``, ``start_grpc_server``);
* ``convert``: messages to and from the core's types, and errors to status codes.
"""

from service.grpc.servicer import (
    GRPC_HOST_ENV,
    SessionServicer,
    create_grpc_server,
    grpc_host,
    start_grpc_server,
)

__all__ = ["GRPC_HOST_ENV", "SessionServicer", "create_grpc_server", "grpc_host", "start_grpc_server"]
