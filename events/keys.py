"""Every Redis key name of the log, in one place, and the partition function.

Layout (``prefix`` defaults to ``sessions``; ``p`` is the partition number; ``{p}`` is a Redis Cluster hash
tag, so every key of one partition lives in one slot and one script can touch them all)::

    {prefix}:{p}:config                         hash   limits and the partition count, read by the script;
                                                       state=lost: the log lost its state, writes refused
                                                       until ``sessions recover-log`` (events.log)
    {prefix}:{p}:log                            stream the partition's events, in order
    {prefix}:{p}:agg:{tenant}:{kind}:{id}        hash   aggregate state: v (version), pos, user, del, mc
    {prefix}:{p}:tc:{tenant}:{kind}:{id}         hash   a session's tool call ids: 0 pending, 1 answered
    {prefix}:{p}:mem:{tenant}:{kind}:{id}        set    the memory keys the aggregate holds
    {prefix}:{p}:idem:{tenant}:{event_id}        string the result of the append that used this event id (TTL)
    {prefix}:{p}:scoped:{tenant}:{user}          set    sessions where a user saved session-scoped memory
    {prefix}:{p}:lease:{projection}              string the projector lease of a partition (owner, epoch)
    {prefix}:{workers}:{projection}              zset   live projector workers, scored by heartbeat expiry
    {prefix}:{dek:{tenant}:{user}}               string a user's data key, "<key id>:<base64 key>": a cache
                                                       of the wrapped copy beside the read models (both
                                                       deleted = crypto-shredding; ``service.keyring``)

The partition of an aggregate is ``h % partitions`` where ``h`` folds the UTF-8 bytes of
``tenant/kind/id`` as ``h = (h * 31 + byte) % 2147483647``: integer arithmetic that Redis' Lua 5.1 can check
exactly, and that any language can compute.
"""

from __future__ import annotations

__all__ = ["MODULUS", "Keys", "aggregate_hash", "partition_of"]

MODULUS = 2_147_483_647


def aggregate_hash(tenant: str, kind: str, aggregate_id: str) -> int:
    h = 0
    for byte in f"{tenant}/{kind}/{aggregate_id}".encode():
        h = (h * 31 + byte) % MODULUS
    return h


def partition_of(tenant: str, kind: str, aggregate_id: str, partitions: int) -> int:
    return aggregate_hash(tenant, kind, aggregate_id) % partitions


class Keys:
    """Key names for one deployment (one prefix)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "sessions") -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain '{' or '}' (they mark Redis Cluster hash tags)")
        self.prefix = prefix

    def base(self, partition: int) -> str:
        return f"{self.prefix}:{{{partition}}}"

    def config(self, partition: int) -> str:
        return f"{self.base(partition)}:config"

    def log(self, partition: int) -> str:
        return f"{self.base(partition)}:log"

    def aggregate(self, partition: int, tenant: str, kind: str, aggregate_id: str) -> str:
        return f"{self.base(partition)}:agg:{tenant}:{kind}:{aggregate_id}"

    def tool_calls(self, partition: int, tenant: str, kind: str, aggregate_id: str) -> str:
        return f"{self.base(partition)}:tc:{tenant}:{kind}:{aggregate_id}"

    def memory_keys(self, partition: int, tenant: str, kind: str, aggregate_id: str) -> str:
        return f"{self.base(partition)}:mem:{tenant}:{kind}:{aggregate_id}"

    def idempotency(self, partition: int, tenant: str, event_id: str) -> str:
        return f"{self.base(partition)}:idem:{tenant}:{event_id}"

    def scoped_sessions(self, partition: int, tenant: str, user_id: str) -> str:
        return f"{self.base(partition)}:scoped:{tenant}:{user_id}"

    def lease(self, partition: int, projection: str) -> str:
        return f"{self.base(partition)}:lease:{projection}"

    def workers(self, projection: str) -> str:
        """Not tied to a partition: its own hash tag, so it lives in one slot of a cluster."""
        return f"{self.prefix}:{{workers}}:{projection}"

    def data_key(self, tenant: str, user_id: str) -> str:
        """Not tied to a partition: a hash tag of its own per user, so keys spread over a cluster's slots
        (the tag ends at the first '}', so a '}' in a user id only shortens it)."""
        return f"{self.prefix}:{{dek:{tenant}:{user_id}}}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this deployment (tests use it to clean up)."""
        return f"{self.prefix}:{{*"
