"""Projector workers: leases over partitions, batches applied to the read models, status, trim, CLI."""

from .errors import CommandError, ConsumerError, NotCaughtUp
from .leases import Lease, LeaseManager, LeaseState, quota, rebalance_plan
from .projector import OUTAGES, Projector, ProjectorStats, default_worker_id
from .status import PartitionStatus, partition_status
from .trim import TrimResult, trim_partitions

__all__ = [
    "OUTAGES",
    "CommandError",
    "ConsumerError",
    "Lease",
    "LeaseManager",
    "LeaseState",
    "NotCaughtUp",
    "PartitionStatus",
    "Projector",
    "ProjectorStats",
    "TrimResult",
    "default_worker_id",
    "partition_status",
    "quota",
    "rebalance_plan",
    "trim_partitions",
]
