-- Users who sign in through an upstream identity provider: keyed by the provider's
-- id and the upstream subject (NULL for local password users).
ALTER TABLE users ADD COLUMN idp TEXT;
ALTER TABLE users ADD COLUMN idp_subject TEXT;
CREATE UNIQUE INDEX users_idp_subject ON users (idp, idp_subject);

-- Sign-ins in progress at an upstream identity provider, so that the callback
-- completes on any replica and after a restart. `state_hash`: SHA-256 of the
-- `state` sent upstream; `browser_hash`: SHA-256 of the binding value in the
-- browser's cookie; `nonce_hash`: SHA-256 of the OIDC nonce; `pkce_verifier`:
-- sealed with the key-encryption key when one is configured; `request`: the MCP
-- client's authorization request (JSON) to resume.
CREATE TABLE upstream_logins (
    state_hash TEXT PRIMARY KEY,
    idp TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    nonce_hash TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upstream_logins_expires ON upstream_logins (expires_at);
