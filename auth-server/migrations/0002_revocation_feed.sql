-- The revocation feed: grants and access tokens revoked before they expired, in the
-- order they were revoked, for resource servers that cache verified tokens. `seq`
-- comes from the single counter row: a revoking transaction holds that row until it
-- commits, so entries become visible in `seq` order on every database.
CREATE TABLE revocation_counter (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO revocation_counter (id, seq) VALUES (1, 0);

CREATE TABLE revocations (
    seq BIGINT PRIMARY KEY,
    -- 'grant' (every token of the grant, `sid`) or 'jti' (one access token)
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    -- When the last access token it covers expires; purged some time after.
    expires_at BIGINT NOT NULL
);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);
