-- A second factor (#18): the TOTP secret once enrolment is confirmed (NULL: TOTP off), the
-- last time step a code was accepted for (a code works once, not for its whole minute), and
-- the single-use recovery codes, stored as their SHA-256 (`RecoveryCodes::hash`). Additive:
-- existing accounts keep working, with TOTP off.
ALTER TABLE users ADD COLUMN totp_secret TEXT;                -- base32
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;          -- unix seconds / 30

CREATE TABLE recovery_codes (
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT    NOT NULL,                               -- base64url SHA-256
    PRIMARY KEY (user_id, code_hash)
);
