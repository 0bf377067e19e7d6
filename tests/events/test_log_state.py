"""A log that lost its state is detected, and writes are refused with 503 ``log_state_lost`` (issue 15,
item 8), on fakeredis and the real Redis."""

from __future__ import annotations

import pytest

from events import EventLog, Unavailable
from events.errors import ConfigurationError
from tests.fix_redis import delete_prefix

from .factories import added, created, msg


async def test_a_fresh_log_is_not_lost(event_log: EventLog) -> None:
    assert await event_log.setup({}) == []
    assert not await event_log.state_lost()
    assert (await event_log.append([created("s1", "alice")])).appended


async def test_a_log_behind_the_read_models_is_lost_and_refuses_writes(event_log: EventLog) -> None:
    r = await event_log.append([created("s1", "alice")])
    await delete_prefix(event_log.redis, event_log.settings.prefix)  # Redis restarted empty
    fresh = EventLog(event_log.redis, event_log.settings)  # a process started after it
    assert await fresh.setup({r.partition: r.position}) == [r.partition]
    assert await fresh.state_lost()
    with pytest.raises(Unavailable) as info:
        await fresh.append([created("s1", "mallory")])
    assert info.value.code == "log_state_lost"
    # Every partition refuses (state spans partitions: a user's scoped set lives in the user's).
    with pytest.raises(Unavailable):
        await fresh.append([created("elsewhere", "bob")])
    # Setting up again (another process, with or without checkpoints) does not clear the mark.
    assert await EventLog(event_log.redis, event_log.settings).setup() == []
    assert await fresh.state_lost()
    with pytest.raises(Unavailable):
        await fresh.append([created("s2", "bob")])


async def test_a_config_gone_under_a_running_process_refuses_writes(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    await delete_prefix(event_log.redis, event_log.settings.prefix)
    assert await event_log.state_lost()
    with pytest.raises(Unavailable) as info:
        await event_log.append([created("s1", "mallory")])
    assert info.value.code == "log_state_lost"
    (refused,) = await event_log.append_batch([[added("s1", msg("user", "x"))]])
    assert isinstance(refused, Unavailable) and refused.code == "log_state_lost"


async def test_a_log_never_set_up_is_a_configuration_error(event_log: EventLog) -> None:
    never = EventLog(event_log.redis, event_log.settings)
    await delete_prefix(event_log.redis, event_log.settings.prefix)
    with pytest.raises(ConfigurationError) as info:
        await never.append([created("s1", "alice")])
    assert info.value.code == "log_not_configured"
