-- Users of the demo app on Postgres: the SQLite schema (../sqlite/0001_users.sql) in
-- Postgres types. Usernames are unique regardless of case through an index on
-- `lower(username)` (SQLite says `COLLATE NOCASE`), matching the login throttle, which counts
-- failures per lower-cased username; the queries compare `lower(username)`.
CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,                                 -- argon2id PHC string
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL                                  -- unix seconds
);
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

CREATE TABLE user_permissions (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission TEXT   NOT NULL,
    PRIMARY KEY (user_id, permission)
);

-- API tokens for `Authorization: Bearer`: only the SHA-256 of the token is stored, so a
-- leaked database does not leak working tokens.
CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256 BYTEA  NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
