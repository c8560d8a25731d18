//! Every SQL statement of the store, written once and run by both drivers: the
//! rusqlite store (SQLite files) and the sqlx `Any` store (PostgreSQL, in-memory
//! SQLite). The text is portable: `$n` placeholders, `ON CONFLICT`, `RETURNING`,
//! BIGINT unix seconds and 0/1 flags; a locking read ([`Locking`]) gets its
//! `FOR UPDATE` on PostgreSQL only.
//!
//! SQLite reads `$n` as a *named* parameter and numbers it by first appearance,
//! while rusqlite binds by position; so in every statement `$1, $2, ...` must
//! first appear in increasing order (a later `$1` again is fine). The tests below
//! hold every statement to that.
//!
//! `SELECT`s name their columns: the row mappers in `rows.rs` read them by
//! position, in the order of the `*_columns!` macros.

/// The schema, as `(version, description, sql)` in order. Both stores apply it
/// and record it in sqlx's ledger (`_sqlx_migrations`).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (
        2,
        "revocation feed",
        include_str!("../../migrations/0002_revocation_feed.sql"),
    ),
    (
        3,
        "one active signing key",
        include_str!("../../migrations/0003_one_active_signing_key.sql"),
    ),
    (
        4,
        "identity providers",
        include_str!("../../migrations/0004_identity_providers.sql"),
    ),
];

/// A `SELECT` whose rows stay locked until the transaction ends, for a check that
/// a later write of the same transaction relies on. On PostgreSQL that is
/// `SELECT ... FOR UPDATE` (`for_update`): another transaction that writes or locks
/// those rows waits for this one, and then sees its writes. SQLite has no row locks
/// (nor the syntax): its write transactions (`BEGIN IMMEDIATE`) hold the whole
/// database's write lock from their first statement, so the `plain` text is as
/// exclusive there. The statement is written once; [`for_update!`] adds the clause.
#[derive(Debug, Clone, Copy)]
pub struct Locking {
    pub plain: &'static str,
    pub for_update: &'static str,
}

macro_rules! for_update {
    ($sql:expr) => {
        Locking {
            plain: $sql,
            for_update: concat!($sql, " FOR UPDATE"),
        }
    };
}

macro_rules! user_columns {
    () => {
        "id, username, password_hash, role, email, name, disabled, created_at, idp, idp_subject"
    };
}
/// The columns a new user row fills: a local user's, and with `idp, idp_subject`
/// a federated one's.
macro_rules! new_user_columns {
    () => {
        "id, username, password_hash, role, email, name, disabled, created_at, updated_at"
    };
}
macro_rules! upstream_login_columns {
    () => {
        "state_hash, idp, browser_hash, nonce_hash, pkce_verifier, request, created_at, expires_at"
    };
}
macro_rules! client_columns {
    () => {
        "client_id, client_name, secret_hash, metadata, source, \
         registration_token_hash, can_introspect, created_at, updated_at"
    };
}
macro_rules! code_columns {
    () => {
        "code_hash, client_id, user_id, redirect_uri, scope, resource, \
         code_challenge, nonce, auth_time, created_at, expires_at, grant_id"
    };
}
/// `$t` (a table alias with its dot, or `""`) before each of the column names.
macro_rules! prefixed {
    ($t:literal: $first:ident $(, $name:ident)*) => {
        concat!($t, stringify!($first) $(, ", ", $t, stringify!($name))*)
    };
}
/// The grant columns, each after `$t`: a table alias with its dot (`"g."`), or `""`.
macro_rules! grant_columns {
    ($t:literal) => {
        prefixed!($t: id, user_id, client_id, scope, resource, auth_time, created_at, expires_at, revoked_at)
    };
}
macro_rules! refresh_columns {
    () => {
        "token_hash, grant_id, scope, created_at, expires_at, rotated_at"
    };
}
macro_rules! access_columns {
    () => {
        "jti, grant_id, client_id, user_id, scope, audience, issued_at, expires_at, revoked_at"
    };
}
macro_rules! key_columns {
    () => {
        "kid, alg, private_pkcs8, public_key, created_at, retired_at"
    };
}
macro_rules! insert_client {
    () => {
        "INSERT INTO clients (client_id, client_name, secret_hash, metadata, source, \
         registration_token_hash, can_introspect, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    };
}

/// Declares the statements and, for the tests, the list of all of them.
macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident = $sql:expr;)*) => {
        $($(#[$doc])* pub const $name: &str = $sql;)*
        #[cfg(test)]
        const ALL: &[&str] = &[$($name),*];
    };
}

/// Declares the locking statements and, for the tests, the list of all of them.
macro_rules! locking_statements {
    ($($(#[$doc:meta])* $name:ident = $sql:expr;)*) => {
        $($(#[$doc])* pub const $name: Locking = for_update!($sql);)*
        #[cfg(test)]
        const ALL_LOCKING: &[Locking] = &[$($name),*];
    };
}

locking_statements! {
    /// A code, locked: a replay marks it while no redemption can link a grant.
    LOCK_CODE = concat!("SELECT ", code_columns!(), " FROM auth_codes WHERE code_hash = $1");
    /// A live grant, locked: tokens are added to it only while no revocation runs.
    LOCK_LIVE_GRANT = "SELECT id FROM grants WHERE id = $1 AND revoked_at IS NULL";
    /// The owner of a grant, locked for its revocation: token writes to it wait.
    LOCK_GRANT_OWNER = "SELECT user_id, client_id FROM grants WHERE id = $1";
}

statements! {
    // ----- users -----

    INSERT_USER = concat!(
        "INSERT INTO users (", new_user_columns!(), ") \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (username) DO NOTHING"
    );
    USER_BY_NAME = concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1");
    USER_BY_ID = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    LIST_USERS = concat!("SELECT ", user_columns!(), " FROM users ORDER BY username");
    SET_PASSWORD = "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3";
    SET_DISABLED = "UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3";
    /// In id order, the order every cascade locks grants in: two cascades over the
    /// same grants queue instead of deadlocking.
    LIVE_GRANTS_OF_USER = "SELECT g.id FROM grants g JOIN users u ON u.id = g.user_id \
        WHERE u.username = $1 AND g.revoked_at IS NULL ORDER BY g.id";
    DELETE_SESSIONS_OF_USER = "DELETE FROM sessions \
        WHERE user_id = (SELECT id FROM users WHERE username = $1)";

    // ----- users from identity providers -----

    USER_BY_IDENTITY = concat!(
        "SELECT ", user_columns!(), " FROM users WHERE idp = $1 AND idp_subject = $2"
    );
    /// Inserts nothing when the username is taken (the caller tries the next
    /// one). The identity is looked up before; a concurrent first sign-in of the
    /// same identity fails on its unique index, inside a savepoint.
    INSERT_FEDERATED_USER = concat!(
        "INSERT INTO users (", new_user_columns!(), ", idp, idp_subject) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10) ON CONFLICT (username) DO NOTHING"
    );
    /// What the identity provider says now (the disabled flag stays ours).
    UPDATE_FEDERATED_USER = "UPDATE users SET role = $1, email = $2, name = $3, updated_at = $4 \
        WHERE id = $5";
    /// Follows a renamed upstream username when nobody else holds the new name.
    RENAME_USER_IF_FREE = "UPDATE users SET username = $1 WHERE id = $2 \
        AND NOT EXISTS (SELECT 1 FROM users o WHERE o.username = $1)";

    /// Around a statement whose unique violation means "taken" rather than
    /// failure: on PostgreSQL an error aborts the whole transaction unless rolled
    /// back to a savepoint (same text on SQLite).
    SAVEPOINT_TAKEN = "SAVEPOINT taken";
    RELEASE_TAKEN = "RELEASE SAVEPOINT taken";
    ROLLBACK_TO_TAKEN = "ROLLBACK TO SAVEPOINT taken";

    // ----- sign-ins in progress at identity providers -----

    INSERT_UPSTREAM_LOGIN = concat!(
        "INSERT INTO upstream_logins (", upstream_login_columns!(), ") \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    );
    /// Single use: the row is gone once read.
    TAKE_UPSTREAM_LOGIN = concat!(
        "DELETE FROM upstream_logins WHERE state_hash = $1 RETURNING ",
        upstream_login_columns!()
    );

    // ----- clients -----

    UPSERT_CLIENT = concat!(
        insert_client!(),
        " ON CONFLICT (client_id) DO UPDATE SET client_name = excluded.client_name, \
        secret_hash = excluded.secret_hash, metadata = excluded.metadata, \
        source = excluded.source, can_introspect = excluded.can_introspect, \
        updated_at = excluded.updated_at"
    );
    INSERT_CLIENT = concat!(insert_client!(), " ON CONFLICT (client_id) DO NOTHING");
    CLIENT_BY_ID = concat!("SELECT ", client_columns!(), " FROM clients WHERE client_id = $1");
    LIST_CLIENTS = concat!(
        "SELECT ", client_columns!(), " FROM clients ORDER BY created_at, client_id"
    );
    UPDATE_CLIENT_METADATA = "UPDATE clients SET metadata = $1, client_name = $2, \
        updated_at = $3 WHERE client_id = $4";
    LIVE_GRANTS_OF_CLIENT = "SELECT id FROM grants WHERE client_id = $1 AND revoked_at IS NULL \
        ORDER BY id";
    REVOKE_ACCESS_TOKENS_OF_CLIENT = "UPDATE access_tokens SET revoked_at = $1 \
        WHERE client_id = $2 AND revoked_at IS NULL";
    DELETE_CODES_OF_CLIENT = "DELETE FROM auth_codes WHERE client_id = $1";
    DELETE_CONSENTS_OF_CLIENT = "DELETE FROM consents WHERE client_id = $1";
    DELETE_CLIENT = "DELETE FROM clients WHERE client_id = $1";

    // ----- signing keys -----

    LIST_KEYS = concat!("SELECT ", key_columns!(), " FROM signing_keys ORDER BY created_at");
    RETIRE_KEYS = "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL";
    INSERT_KEY = "INSERT INTO signing_keys \
        (kid, alg, private_pkcs8, public_key, created_at, retired_at) \
        VALUES ($1, $2, $3, $4, $5, NULL)";
    /// Inserts nothing when a key is active (the `signing_keys_one_active` index),
    /// also when another process inserted one a moment ago.
    INSERT_FIRST_KEY = "INSERT INTO signing_keys \
        (kid, alg, private_pkcs8, public_key, created_at, retired_at) \
        VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT DO NOTHING";
    /// Re-seals a private key, only if it still holds the value that was read.
    RESEAL_KEY = "UPDATE signing_keys SET private_pkcs8 = $1 \
        WHERE kid = $2 AND private_pkcs8 = $3";

    // ----- sessions and consent -----

    INSERT_SESSION = "INSERT INTO sessions (id_hash, user_id, auth_time, expires_at) \
        VALUES ($1, $2, $3, $4)";
    LIVE_SESSION = "SELECT id_hash, user_id, auth_time, expires_at FROM sessions \
        WHERE id_hash = $1 AND expires_at > $2";
    DELETE_SESSION = "DELETE FROM sessions WHERE id_hash = $1";
    CONSENT = "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2";
    SAVE_CONSENT = "INSERT INTO consents (user_id, client_id, scope, created_at) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, client_id) \
        DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at";
    DELETE_CONSENT = "DELETE FROM consents WHERE user_id = $1 AND client_id = $2";

    // ----- codes -----

    INSERT_CODE = "INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, scope, \
        resource, code_challenge, nonce, auth_time, created_at, expires_at, used_at, grant_id) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)";
    /// Marks an unused code used and returns it: the common redemption in one statement.
    CLAIM_CODE = concat!(
        "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING ",
        code_columns!()
    );
    /// Links a code to its grant, or to the replay mark; only the first link counts.
    LINK_CODE = "UPDATE auth_codes SET grant_id = $1 WHERE code_hash = $2 AND grant_id IS NULL";

    // ----- grants and tokens -----

    INSERT_GRANT = "INSERT INTO grants (id, user_id, client_id, scope, resource, auth_time, \
        created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)";
    GRANT_BY_ID = concat!("SELECT ", grant_columns!(""), " FROM grants WHERE id = $1");
    REVOKE_GRANT = "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
    /// A new refresh token keeps its grant alive at least as long as itself.
    EXTEND_GRANT = "UPDATE grants SET expires_at = $1 WHERE id = $2 AND expires_at < $1";
    INSERT_ACCESS_TOKEN = "INSERT INTO access_tokens (jti, grant_id, client_id, user_id, scope, \
        audience, issued_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)";
    ACCESS_TOKEN_BY_JTI = concat!(
        "SELECT ", access_columns!(), " FROM access_tokens WHERE jti = $1"
    );
    REVOKE_ACCESS_TOKEN = "UPDATE access_tokens SET revoked_at = $1 \
        WHERE jti = $2 AND revoked_at IS NULL";
    REVOKE_ACCESS_TOKENS_OF_GRANT = "UPDATE access_tokens SET revoked_at = $1 \
        WHERE grant_id = $2 AND revoked_at IS NULL";
    INSERT_REFRESH_TOKEN = "INSERT INTO refresh_tokens \
        (token_hash, grant_id, scope, created_at, expires_at, rotated_at) \
        VALUES ($1, $2, $3, $4, $5, NULL)";
    REFRESH_TOKEN_BY_HASH = concat!(
        "SELECT ", refresh_columns!(), " FROM refresh_tokens WHERE token_hash = $1"
    );
    ROTATE_REFRESH_TOKEN = "UPDATE refresh_tokens SET rotated_at = $1 \
        WHERE token_hash = $2 AND rotated_at IS NULL";
    DELETE_REFRESH_TOKENS_OF_GRANT = "DELETE FROM refresh_tokens WHERE grant_id = $1";
    /// Live access tokens of a client that belong to no grant (client_credentials):
    /// a grant revocation does not cover them.
    LIVE_GRANTLESS_TOKENS_OF_CLIENT = "SELECT jti FROM access_tokens WHERE client_id = $1 \
        AND grant_id IS NULL AND revoked_at IS NULL AND expires_at > $2";

    // ----- revocation feed -----

    /// The next feed position. The counter row stays locked until the revoking
    /// transaction commits, so positions become visible in order.
    NEXT_REVOCATION_SEQ = "UPDATE revocation_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq";
    /// A revoked grant, relevant until the last of its access tokens expires.
    RECORD_GRANT_REVOCATION = "INSERT INTO revocations \
        (seq, kind, subject, revoked_at, expires_at) \
        SELECT $1, 'grant', $2, $3, COALESCE(MAX(expires_at), $3) \
        FROM access_tokens WHERE grant_id = $2";
    /// A revoked access token, relevant until it expires.
    RECORD_TOKEN_REVOCATION = "INSERT INTO revocations \
        (seq, kind, subject, revoked_at, expires_at) \
        SELECT $1, 'jti', jti, $2, expires_at FROM access_tokens WHERE jti = $3";
    REVOCATION_HEAD = "SELECT seq FROM revocation_counter WHERE id = 1";
    OLDEST_REVOCATION = "SELECT COALESCE(MIN(seq), 0) FROM revocations";
    REVOCATIONS_AFTER = "SELECT seq, kind, subject, expires_at FROM revocations \
        WHERE seq > $1 ORDER BY seq LIMIT $2";

    // ----- admin views -----

    /// The grant columns, then the username and the client name.
    ACTIVE_GRANTS = concat!(
        "SELECT ", grant_columns!("g."), ", u.username, c.client_name FROM grants g \
        JOIN users u ON u.id = g.user_id LEFT JOIN clients c ON c.client_id = g.client_id \
        WHERE g.revoked_at IS NULL AND g.expires_at > $1 ORDER BY g.created_at, g.id"
    );
    ACTIVE_GRANT_TOKENS = "SELECT jti, grant_id FROM access_tokens WHERE grant_id IS NOT NULL \
        AND revoked_at IS NULL AND expires_at > $1 ORDER BY issued_at";
    USER_STATS = "SELECT u.username, u.role, u.disabled, \
        (SELECT COUNT(*) FROM grants g WHERE g.user_id = u.id AND g.revoked_at IS NULL \
        AND g.expires_at > $1) FROM users u ORDER BY u.username";

    // ----- audit, settings, maintenance -----

    INSERT_AUDIT = "INSERT INTO audit_log (id, at_ms, event, username, client_id, ip, detail) \
        VALUES ($1, $2, $3, $4, $5, $6, $7)";
    LIST_AUDIT = "SELECT at_ms, event, username, client_id, ip, detail FROM audit_log \
        ORDER BY at_ms DESC LIMIT $1";
    PING = "SELECT 1";
    INIT_KV = "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
    KV = "SELECT value FROM kv WHERE key = $1";
    /// Re-seals a stored setting, only if it still holds the value that was read.
    RESEAL_KV = "UPDATE kv SET value = $1 WHERE key = $2 AND value = $3";
    PURGE_CODES = "DELETE FROM auth_codes WHERE expires_at < $1";
    PURGE_SESSIONS = "DELETE FROM sessions WHERE expires_at < $1";
    PURGE_ACCESS_TOKENS = "DELETE FROM access_tokens WHERE expires_at < $1";
    PURGE_REFRESH_TOKENS = "DELETE FROM refresh_tokens WHERE expires_at < $1";
    PURGE_REVOCATIONS = "DELETE FROM revocations WHERE expires_at < $1";
    PURGE_UPSTREAM_LOGINS = "DELETE FROM upstream_logins WHERE expires_at < $1";

    // ----- SQLite connection setup (both SQLite drivers) -----

    ENABLE_WAL = "PRAGMA journal_mode=WAL";
    /// In WAL mode, NORMAL never corrupts the database; a power loss may lose the
    /// last transactions. Codes and tokens are short-lived, so we trade that for
    /// write throughput.
    SYNCHRONOUS_NORMAL = "PRAGMA synchronous=NORMAL";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The numbers of the `$n` placeholders in the order they appear.
    fn placeholders(sql: &str) -> Vec<usize> {
        let mut out = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            assert!(!digits.is_empty(), "a bare `$` in {sql}");
            out.push(digits.parse().unwrap());
        }
        out
    }

    /// Every statement text, the locking ones in both forms.
    fn every_text() -> Vec<&'static str> {
        ALL.iter()
            .copied()
            .chain(ALL_LOCKING.iter().flat_map(|l| [l.plain, l.for_update]))
            .collect()
    }

    #[test]
    fn placeholders_first_appear_in_increasing_order() {
        for sql in every_text() {
            let mut next = 1;
            for n in placeholders(sql) {
                assert!(
                    n <= next,
                    "`${n}` appears before `${next}` in: {sql} \
                     (SQLite would bind it to position {next})"
                );
                if n == next {
                    next += 1;
                }
            }
            assert!(!sql.contains('?'), "use `$n`, not `?`: {sql}");
        }
    }

    #[test]
    fn grant_columns_take_a_table_alias() {
        assert_eq!(
            GRANT_BY_ID,
            "SELECT id, user_id, client_id, scope, resource, auth_time, created_at, \
             expires_at, revoked_at FROM grants WHERE id = $1"
        );
        assert!(ACTIVE_GRANTS.starts_with(
            "SELECT g.id, g.user_id, g.client_id, g.scope, g.resource, g.auth_time, \
             g.created_at, g.expires_at, g.revoked_at, u.username, c.client_name FROM grants g "
        ));
    }

    #[test]
    fn no_two_statements_have_the_same_text() {
        let all = every_text();
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "two constants hold the same text");
    }

    #[test]
    fn locking_statements_lock_on_postgres_only() {
        for l in ALL_LOCKING {
            assert!(l.plain.starts_with("SELECT ") && !l.plain.contains("FOR UPDATE"));
            assert_eq!(l.for_update, format!("{} FOR UPDATE", l.plain));
        }
    }
}
