-- The lab's suites (their suite.toml text and schedule) and the runs made of them.
CREATE TABLE hub_lab_suites (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    definition  TEXT NOT NULL,
    -- Run every this many milliseconds in `mcp-hub serve`; NULL: only when asked.
    interval_ms INTEGER,
    -- Microseconds since the epoch.
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE hub_lab_runs (
    id          TEXT PRIMARY KEY,
    -- NULL for a run of no stored suite, or once its suite is deleted.
    suite_id    TEXT REFERENCES hub_lab_suites (id) ON DELETE SET NULL,
    suite       TEXT NOT NULL,
    target      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    passed      INTEGER NOT NULL,
    -- The whole RunReport, as JSON.
    report      TEXT NOT NULL
);

CREATE INDEX hub_lab_runs_started ON hub_lab_runs (started_at DESC);
CREATE INDEX hub_lab_runs_suite_started ON hub_lab_runs (suite_id, started_at DESC);
