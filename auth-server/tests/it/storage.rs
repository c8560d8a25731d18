//! Storage-level behaviours, run against both `Store` implementations on a
//! SQLite file: the rusqlite store the server uses for SQLite, and the sqlx store
//! (kept for PostgreSQL) so that both stay honest. Plus the migration ledger the
//! two share.

use std::sync::Arc;

use auth_server::storage::sql::SqlStore;
use auth_server::storage::sqlite::SqliteStore;
use auth_server::storage::*;

const NOW: i64 = 1_700_000_000;

struct Db {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn rusqlite_store() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db"), true, 4).unwrap();
    Db {
        store: Arc::new(store),
        _dir: dir,
    }
}

async fn sqlx_store() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let store = SqlStore::connect(&url, 4).await.unwrap();
    Db {
        store: Arc::new(store),
        _dir: dir,
    }
}

/// Runs a behaviour against both stores.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn rusqlite_store() {
                let db = super::rusqlite_store();
                super::$name(db.store.as_ref()).await;
            }
            #[tokio::test]
            async fn sqlx_store() {
                let db = super::sqlx_store().await;
                super::$name(db.store.as_ref()).await;
            }
        }
    };
}

fn code(hash: &str, expires_at: i64) -> AuthCodeRecord {
    AuthCodeRecord {
        code_hash: hash.into(),
        client_id: "client-1".into(),
        user_id: "user-1".into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        scope: "mcp:read".into(),
        resource: "http://127.0.0.1:9/mcp".into(),
        code_challenge: "challenge".into(),
        nonce: None,
        auth_time: NOW,
        created_at: NOW,
        expires_at,
        grant_id: None,
    }
}

fn grant(id: &str) -> GrantRecord {
    GrantRecord {
        id: id.into(),
        user_id: Some("user-1".into()),
        client_id: "client-1".into(),
        scope: "mcp:read".into(),
        resource: "http://127.0.0.1:9/mcp".into(),
        auth_time: NOW,
        created_at: NOW,
        expires_at: NOW + 900,
        revoked_at: None,
    }
}

fn issued(grant_id: &str, jti: &str, refresh: Option<&str>) -> Issued {
    Issued {
        access: AccessTokenRecord {
            jti: jti.into(),
            grant_id: Some(grant_id.into()),
            client_id: "client-1".into(),
            user_id: Some("user-1".into()),
            scope: "mcp:read".into(),
            audience: "http://127.0.0.1:9/mcp".into(),
            issued_at: NOW,
            expires_at: NOW + 900,
            revoked_at: None,
        },
        refresh: refresh.map(|hash| RefreshRecord {
            token_hash: hash.into(),
            grant_id: grant_id.into(),
            scope: "mcp:read".into(),
            created_at: NOW,
            expires_at: NOW + 86_400,
            rotated_at: None,
        }),
    }
}

fn audit(detail: &str) -> AuditRecord {
    AuditRecord {
        at_ms: NOW * 1000,
        event: "token_issued".into(),
        username: Some("alice".into()),
        client_id: Some("client-1".into()),
        ip: Some("127.0.0.1".into()),
        detail: detail.into(),
    }
}

async fn audited(store: &dyn Store, detail: &str) -> usize {
    store
        .list_audit(1000)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.detail == detail)
        .count()
}

async fn codes_are_single_use_and_a_replay_during_minting_blocks_the_grant(store: &dyn Store) {
    assert!(matches!(
        store.redeem_code("unknown", NOW).await.unwrap(),
        CodeRedemption::NotFound
    ));
    store.insert_code(&code("c1", NOW + 60)).await.unwrap();
    let first = store.redeem_code("c1", NOW).await.unwrap();
    assert!(matches!(first, CodeRedemption::Fresh(ref r) if r.client_id == "client-1"));
    // A replay before the first redemption stored its grant ...
    assert!(matches!(
        store.redeem_code("c1", NOW).await.unwrap(),
        CodeRedemption::Replayed(ref r) if r.grant_id.is_none()
    ));
    // ... leaves the first redemption nothing to attach: no grant, no tokens,
    // no audit row.
    let res = store
        .create_grant(
            &grant("g1"),
            &issued("g1", "j1", Some("r1")),
            Some("c1"),
            Some(&audit("g1 issued")),
        )
        .await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    assert!(store.find_grant("g1").await.unwrap().is_none());
    assert!(store.find_access_token("j1").await.unwrap().is_none());
    assert!(store.find_refresh("r1").await.unwrap().is_none());
    assert_eq!(audited(store, "g1 issued").await, 0);
}
both!(codes_are_single_use_and_a_replay_during_minting_blocks_the_grant);

async fn a_replay_after_the_grant_reports_it_and_revoking_cascades(store: &dyn Store) {
    store.insert_code(&code("c2", NOW + 60)).await.unwrap();
    assert!(matches!(
        store.redeem_code("c2", NOW).await.unwrap(),
        CodeRedemption::Fresh(_)
    ));
    store
        .create_grant(
            &grant("g2"),
            &issued("g2", "j2", Some("r2")),
            Some("c2"),
            Some(&audit("g2 issued")),
        )
        .await
        .unwrap();
    // The grant, its tokens and its audit row were written together.
    assert!(store.find_grant("g2").await.unwrap().is_some());
    assert!(store.find_refresh("r2").await.unwrap().is_some());
    assert_eq!(audited(store, "g2 issued").await, 1);
    let replay = store.redeem_code("c2", NOW + 1).await.unwrap();
    let CodeRedemption::Replayed(rec) = replay else {
        panic!("a second redemption must be a replay: {replay:?}");
    };
    assert_eq!(rec.grant_id.as_deref(), Some("g2"));
    assert!(store.revoke_grant("g2", NOW + 2, false).await.unwrap());
    assert_eq!(
        store.find_grant("g2").await.unwrap().unwrap().revoked_at,
        Some(NOW + 2)
    );
    assert_eq!(
        store
            .find_access_token("j2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 2)
    );
    assert!(store.find_refresh("r2").await.unwrap().is_none());
    assert!(!store.revoke_grant("g2", NOW + 3, false).await.unwrap());
    assert!(!store
        .revoke_grant("no-such-grant", NOW, false)
        .await
        .unwrap());
}
both!(a_replay_after_the_grant_reports_it_and_revoking_cascades);

async fn concurrent_redemptions_of_one_code_yield_exactly_one_fresh(store: &dyn Store) {
    store.insert_code(&code("c3", NOW + 60)).await.unwrap();
    let (a, b, c) = tokio::join!(
        store.redeem_code("c3", NOW),
        store.redeem_code("c3", NOW),
        store.redeem_code("c3", NOW),
    );
    let fresh = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|r| matches!(r, CodeRedemption::Fresh(_)))
        .count();
    assert_eq!(fresh, 1);
}
both!(concurrent_redemptions_of_one_code_yield_exactly_one_fresh);

async fn a_refused_grant_does_not_affect_one_committed_with_it(store: &dyn Store) {
    store.insert_code(&code("c4", NOW + 60)).await.unwrap();
    store.insert_code(&code("c5", NOW + 60)).await.unwrap();
    store.redeem_code("c4", NOW).await.unwrap();
    store.redeem_code("c5", NOW).await.unwrap();
    store.redeem_code("c5", NOW).await.unwrap(); // replayed: c5 gets no grant
    let (g4, i4, a4) = (
        grant("g4"),
        issued("g4", "j4", Some("r4")),
        audit("g4 issued"),
    );
    let (g5, i5, a5) = (
        grant("g5"),
        issued("g5", "j5", Some("r5")),
        audit("g5 issued"),
    );
    let (good, bad) = tokio::join!(
        store.create_grant(&g4, &i4, Some("c4"), Some(&a4)),
        store.create_grant(&g5, &i5, Some("c5"), Some(&a5)),
    );
    good.unwrap();
    assert!(matches!(bad, Err(StoreError::Conflict(_))));
    assert!(store.find_grant("g4").await.unwrap().is_some());
    assert!(store.find_access_token("j4").await.unwrap().is_some());
    assert_eq!(audited(store, "g4 issued").await, 1);
    assert!(store.find_grant("g5").await.unwrap().is_none());
    assert!(store.find_refresh("r5").await.unwrap().is_none());
    assert_eq!(audited(store, "g5 issued").await, 0);
}
both!(a_refused_grant_does_not_affect_one_committed_with_it);

async fn a_refresh_token_rotates_once(store: &dyn Store) {
    store
        .create_grant(&grant("g6"), &issued("g6", "j6", Some("r6")), None, None)
        .await
        .unwrap();
    let (next_a, next_b) = (
        issued("g6", "j6a", Some("r6a")),
        issued("g6", "j6b", Some("r6b")),
    );
    let (a, b) = tokio::join!(
        store.rotate_refresh("r6", NOW + 5, &next_a),
        store.rotate_refresh("r6", NOW + 5, &next_b),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one rotation wins: {a} {b}");
    let (winner, loser) = if a { ("r6a", "r6b") } else { ("r6b", "r6a") };
    assert!(store.find_refresh(winner).await.unwrap().is_some());
    assert!(
        store.find_refresh(loser).await.unwrap().is_none(),
        "the losing rotation stores nothing"
    );
    assert_eq!(
        store.find_refresh("r6").await.unwrap().unwrap().rotated_at,
        Some(NOW + 5)
    );
    assert!(!store
        .rotate_refresh("r6", NOW + 6, &issued("g6", "j6c", Some("r6c")))
        .await
        .unwrap());
}
both!(a_refresh_token_rotates_once);

async fn purge_removes_only_what_expired(store: &dyn Store) {
    let now = NOW + 100_000;
    store.insert_code(&code("old", now - 7200)).await.unwrap();
    store.insert_code(&code("recent", now - 60)).await.unwrap();
    let mut expired = issued("g7", "j7", Some("r7"));
    expired.access.expires_at = now - 7200;
    if let Some(r) = expired.refresh.as_mut() {
        r.expires_at = now - 1;
    }
    store.add_tokens(&expired).await.unwrap();
    let mut live = issued("g8", "j8", Some("r8"));
    live.access.expires_at = now + 900;
    if let Some(r) = live.refresh.as_mut() {
        r.expires_at = now + 86_400;
    }
    store.add_tokens(&live).await.unwrap();
    store
        .create_session(&SessionRecord {
            id_hash: "s-old".into(),
            user_id: "user-1".into(),
            auth_time: now - 100,
            expires_at: now - 1,
        })
        .await
        .unwrap();
    assert_eq!(store.purge_expired(now).await.unwrap(), 4);
    // A code stays an hour past expiry so that a late replay is still detected.
    assert!(matches!(
        store.redeem_code("recent", now).await.unwrap(),
        CodeRedemption::Fresh(_)
    ));
    assert!(matches!(
        store.redeem_code("old", now).await.unwrap(),
        CodeRedemption::NotFound
    ));
    assert!(store.find_access_token("j7").await.unwrap().is_none());
    assert!(store.find_refresh("r7").await.unwrap().is_none());
    assert!(store.find_access_token("j8").await.unwrap().is_some());
    assert_eq!(store.purge_expired(now).await.unwrap(), 0);
}
both!(purge_removes_only_what_expired);

// ----- the shared migration ledger -----

fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn ledger(path: &std::path::Path) -> Vec<(i64, bool)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: format!("id-{name}"),
        username: name.into(),
        password_hash: "hash".into(),
        role: auth_server::domain::scope_policy::Role::User,
        email: None,
        name: None,
        disabled: false,
        created_at: NOW,
    }
}

#[tokio::test]
async fn a_database_created_by_the_sqlx_store_opens_without_rerunning_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = SqlStore::connect(&sqlite_url(&path), 2).await.unwrap();
    old.create_user(&user("alice")).await.unwrap();
    old.close().await;
    assert_eq!(ledger(&path), vec![(1, true)]);

    let store = auth_server::storage::open(&sqlite_url(&path), 2)
        .await
        .unwrap();
    assert!(store.find_user_by_name("alice").await.unwrap().is_some());
    store.create_user(&user("bob")).await.unwrap();
    drop(store);
    assert_eq!(ledger(&path), vec![(1, true)], "nothing re-applied");

    // And back: the sqlx store accepts the ledger as it is.
    let again = SqlStore::connect(&sqlite_url(&path), 2).await.unwrap();
    assert!(again.find_user_by_name("bob").await.unwrap().is_some());
    again.close().await;
}

#[tokio::test]
async fn a_database_created_by_the_rusqlite_store_opens_with_the_sqlx_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = SqliteStore::open(&path, true, 2).unwrap();
    store.create_user(&user("carol")).await.unwrap();
    drop(store);
    assert_eq!(ledger(&path), vec![(1, true)]);
    // sqlx validates the recorded checksum: a mismatch would fail here.
    let sqlx = SqlStore::connect(&sqlite_url(&path), 2).await.unwrap();
    assert!(sqlx.find_user_by_name("carol").await.unwrap().is_some());
    sqlx.close().await;
    // Reopening does not re-run anything either.
    let store = SqliteStore::open(&path, false, 2).unwrap();
    assert!(store.find_user_by_name("carol").await.unwrap().is_some());
}

#[tokio::test]
async fn a_changed_or_half_applied_migration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    drop(SqliteStore::open(&path, true, 1).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE _sqlx_migrations SET checksum = x'00'", [])
        .unwrap();
    let err = SqliteStore::open(&path, false, 1).err().unwrap();
    assert!(err.to_string().contains("differs"), "{err}");
    conn.execute("UPDATE _sqlx_migrations SET success = FALSE", [])
        .unwrap();
    let err = SqliteStore::open(&path, false, 1).err().unwrap();
    assert!(err.to_string().contains("partially applied"), "{err}");
}

#[tokio::test]
async fn mode_rw_does_not_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let url = format!("sqlite://{}?mode=rw", path.display());
    assert!(auth_server::storage::open(&url, 1).await.is_err());
    assert!(!path.exists());
}
