-- The read models of the session service: sessions, messages, memories, the event archive (audit and
-- replay), checkpoints and dead letters. Every row carries its tenant. Positions are stream entry ids
-- "<ms>-<seq>", stored as two bigints so they compare as numbers. Runs with search_path set to the target
-- schema (projections.migrations).

CREATE TABLE sessions (
    tenant        text        NOT NULL,
    session_id    text        NOT NULL,
    user_id       text        NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,   -- recorded_at of session.created
    updated_at    timestamptz NOT NULL,   -- recorded_at of the session aggregate's latest event
    message_count bigint      NOT NULL DEFAULT 0,
    version       bigint      NOT NULL,   -- the session aggregate's version last applied
    deleted       boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, session_id)
);
-- A user's live sessions, most recently updated first (keyset pagination on updated_at, session_id).
CREATE INDEX sessions_by_user ON sessions (tenant, user_id, updated_at DESC, session_id DESC) WHERE NOT deleted;

CREATE TABLE messages (
    tenant       text   NOT NULL,
    session_id   text   NOT NULL,
    seq          bigint NOT NULL,          -- 1, 2, 3, ... per session, without gaps
    role         text   NOT NULL,
    content      text,
    name         text,
    tool_calls   jsonb,
    tool_call_id text,
    "timestamp"  bigint NOT NULL,          -- epoch ms
    metadata     jsonb,
    event_id     uuid   NOT NULL,          -- the messages_added event that carried it
    PRIMARY KEY (tenant, session_id, seq)  -- any page is one range scan of this key, whatever the session size
);

CREATE TABLE memories (
    tenant     text        NOT NULL,
    user_id    text        NOT NULL,
    scope      text        NOT NULL,       -- '' for the user scope, else the session id
    key        text        NOT NULL,
    value      jsonb       NOT NULL,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, user_id, scope, key)
);

CREATE TABLE event_archive (
    partition      integer     NOT NULL,
    pos_ms         bigint      NOT NULL,
    pos_seq        bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    type           text        NOT NULL,
    tenant         text        NOT NULL,
    aggregate_kind text        NOT NULL,
    aggregate_id   text        NOT NULL,
    version        bigint      NOT NULL,
    user_id        text,                   -- the user the event concerns (session owner, memory user)
    actor_kind     text        NOT NULL,
    actor_id       text        NOT NULL,
    correlation_id text,
    causation_id   text,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,   -- = pos_ms
    event          json        NOT NULL,   -- the entry's JSON exactly as the log holds it (json, not jsonb)
    PRIMARY KEY (partition, pos_ms, pos_seq),
    CONSTRAINT event_archive_event_id_key UNIQUE (event_id),
    -- The second line against a double apply, behind the checkpoint compare-and-set.
    CONSTRAINT event_archive_aggregate_version_key UNIQUE (tenant, aggregate_kind, aggregate_id, version)
);
-- Audit, oldest first in (recorded_at, partition, position) = (pos_ms, partition, pos_seq) order.
CREATE INDEX event_archive_by_time ON event_archive (tenant, pos_ms, partition, pos_seq);
CREATE INDEX event_archive_by_aggregate
    ON event_archive (tenant, aggregate_kind, aggregate_id, pos_ms, partition, pos_seq);
CREATE INDEX event_archive_by_user
    ON event_archive (tenant, user_id, pos_ms, partition, pos_seq) WHERE user_id IS NOT NULL;
CREATE INDEX event_archive_by_type ON event_archive (tenant, type, pos_ms, partition, pos_seq);
CREATE INDEX event_archive_by_actor ON event_archive (tenant, actor_kind, actor_id, pos_ms, partition, pos_seq);

CREATE TABLE checkpoints (
    projection text        NOT NULL,
    partition  integer     NOT NULL,
    pos_ms     bigint,                     -- NULL: nothing applied yet
    pos_seq    bigint,
    epoch      bigint      NOT NULL DEFAULT 0,  -- fencing epoch of the lease that last wrote it
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, partition),
    CHECK ((pos_ms IS NULL) = (pos_seq IS NULL))
);

CREATE TABLE dead_letters (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection text        NOT NULL,
    partition  integer     NOT NULL,
    pos_ms     bigint      NOT NULL,
    pos_seq    bigint      NOT NULL,
    type       text        NOT NULL,
    version    bigint      NOT NULL,
    data       bytea       NOT NULL,       -- the entry's bytes: it may not even be valid JSON
    error      text        NOT NULL,
    attempts   integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retried    boolean     NOT NULL DEFAULT false
);
CREATE INDEX dead_letters_by_position ON dead_letters (partition, pos_ms, pos_seq);
