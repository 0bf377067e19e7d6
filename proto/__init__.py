"""The gRPC contract of the Session Service: ``sessions.proto`` and its generated modules.

``from proto import sessions_pb2, sessions_pb2_grpc`` works as it did in the original platform.
"""
