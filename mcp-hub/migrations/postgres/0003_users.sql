-- Team login: the hub's users and the refresh tokens handed to them.
CREATE TABLE hub_users (
    username      TEXT PRIMARY KEY,
    -- viewer, operator or admin.
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- An argon2id PHC string ($argon2id$v=19$...): never the password.
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE hub_refresh_tokens (
    -- The SHA-256 (hex) of the token: the token itself is never stored.
    digest     TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES hub_users (username) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX hub_refresh_tokens_user ON hub_refresh_tokens (username);
