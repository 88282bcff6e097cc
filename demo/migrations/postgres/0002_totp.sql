-- A second factor (#18): the SQLite migration (../sqlite/0002_totp.sql) in Postgres types.
-- The TOTP secret once enrolment is confirmed (NULL: TOTP off), the last time step a code
-- was accepted for, and the single-use recovery codes as their SHA-256. Additive: existing
-- accounts keep working, with TOTP off.
ALTER TABLE users ADD COLUMN totp_secret TEXT;                -- base32
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;           -- unix seconds / 30

CREATE TABLE recovery_codes (
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT   NOT NULL,                                -- base64url SHA-256
    PRIMARY KEY (user_id, code_hash)
);
