-- Every index of the event archive costs an insert per archived event, on the projector's hot path. Two of
-- them served no query (checked with EXPLAIN on a 300,000-event archive):
-- * event_archive_by_aggregate: an aggregate's events are found by the guard's UNIQUE (tenant,
--   aggregate_kind, aggregate_id, version) key, then sorted by position (one aggregate's events: a small sort);
-- * event_archive_by_type: a type filter is `type = ANY(...)`, which cannot return rows in position order from
--   that index, so the planner scans event_archive_by_time (or the session/user/actor index) and filters.
-- Dropping an index removes no data.
DROP INDEX IF EXISTS event_archive_by_aggregate;
DROP INDEX IF EXISTS event_archive_by_type;
