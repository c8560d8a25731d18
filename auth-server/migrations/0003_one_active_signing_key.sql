-- At most one signing key is active (signs) at a time. Replicas starting together
-- on an empty database each try to store a first key: the index lets one insert
-- win (the others insert nothing), instead of leaving two active keys.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;
