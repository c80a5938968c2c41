-- Tables are prefixed hub_ so the hub can share a database with the task service.
-- The latest pushed payload per channel and repository, and the idempotency keys of recent
-- pushes (so a retried push is applied once).
CREATE TABLE hub_snapshots (
    channel     TEXT NOT NULL,
    -- The repository in lower case, '' when the snapshot belongs to no repository.
    repo_key    TEXT NOT NULL,
    repository  TEXT,
    title       TEXT NOT NULL,
    data        JSONB NOT NULL,
    actor       TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    revision    BIGINT NOT NULL,
    event_id    TEXT,
    PRIMARY KEY (channel, repo_key)
);

CREATE TABLE hub_sync_receipts (
    idempotency_key TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    repo_key        TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL
);

CREATE INDEX hub_sync_receipts_received_at ON hub_sync_receipts (received_at);
