-- Switchboard tasks, PostgreSQL dialect.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    email           TEXT NOT NULL,            -- stored lower-case
    name            TEXT,
    github_username TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE UNIQUE INDEX users_github_key ON users (lower(github_username));

CREATE TABLE repositories (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,                 -- owner/name
    url        TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX repositories_name_key ON repositories (lower(name));

CREATE TABLE tasks (
    id            UUID PRIMARY KEY,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('not_started', 'in_progress', 'blocked', 'in_review', 'completed', 'cancelled')),
    priority      TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    complexity    TEXT NOT NULL CHECK (complexity IN ('low', 'medium', 'high')),
    assignee_id   UUID NOT NULL REFERENCES users (id),
    repository_id UUID NOT NULL REFERENCES repositories (id),
    created_by    TEXT NOT NULL,
    updated_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    version       BIGINT NOT NULL
);
-- Every listing is ordered by (updated_at, id) descending: each filter's index ends with it.
CREATE INDEX tasks_updated_idx ON tasks (updated_at DESC, id DESC);
CREATE INDEX tasks_assignee_idx ON tasks (assignee_id, updated_at DESC, id DESC);
CREATE INDEX tasks_repository_idx ON tasks (repository_id, updated_at DESC, id DESC);
CREATE INDEX tasks_status_idx ON tasks (status, updated_at DESC, id DESC);

CREATE TABLE task_comments (
    id         UUID PRIMARY KEY,
    task_id    UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    comment    TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_comments_task_idx ON task_comments (task_id, created_at);

-- History outlives its task (no foreign key), so a deletion stays auditable.
CREATE TABLE task_history (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id   UUID NOT NULL,
    field     TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    actor     TEXT NOT NULL,
    comment   TEXT,
    at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_history_task_idx ON task_history (task_id, id);

-- The outbox: one row per committed change, written in the change's transaction, and marked
-- with the bus's id once published. `origin` names the store instance (process) that wrote it,
-- which is the one that relays it to an in-process bus.
CREATE TABLE events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        TEXT NOT NULL,
    type         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    subject      JSONB NOT NULL,
    data         JSONB NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    origin       TEXT NOT NULL,
    published_id TEXT
);
CREATE INDEX events_pending_idx ON events (origin, seq) WHERE published_id IS NULL;
