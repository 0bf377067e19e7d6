-- An event id is an idempotency key (docs/events.md): the log dedups it per partition and tenant, for the
-- dedup window. It cannot do more: the partitions are separate slots of a Redis Cluster, so no one script
-- can see another partition's ids, and a key kept beyond the window would grow with the whole history. An
-- archive that required more (UNIQUE (event_id), across partitions and for ever) refused events the log had
-- acknowledged: the projector dead-lettered them and their data never appeared. An archived event is
-- identified by its position (the primary key) and its aggregate version (the guard's UNIQUE key), which the
-- log does guarantee; the event id stays a column. Dropping a constraint removes no data.
ALTER TABLE event_archive DROP CONSTRAINT IF EXISTS event_archive_event_id_key;
