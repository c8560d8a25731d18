//! The store contract: behaviours run against every `Store` implementation —
//! the rusqlite store the server uses for SQLite files, the sqlx store on a
//! SQLite file, and the sqlx store on PostgreSQL when a server is reachable.
//! Plus the migration ledger the two SQLite stores share.

use std::sync::Arc;

use auth_server::storage::sql::SqlStore;
use auth_server::storage::sqlite::SqliteStore;
use auth_server::storage::*;

const NOW: i64 = 1_700_000_000;

struct Db {
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

impl Db {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("a.db")
    }
}

fn rusqlite_store() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db"), true, 4).unwrap();
    Db {
        store: Arc::new(store),
        dir,
    }
}

async fn sqlx_store() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let store = SqlStore::connect(&url, 4).await.unwrap();
    Db {
        store: Arc::new(store),
        dir,
    }
}

/// A fresh PostgreSQL database for one test (see `create_postgres_database`),
/// dropped by [`PgDb::drop_database`].
struct PgDb {
    store: Arc<SqlStore>,
    admin_url: String,
    name: String,
    /// The test database's own URL.
    url: String,
}

impl PgDb {
    async fn create() -> Option<PgDb> {
        let (admin_url, name, url) =
            crate::helpers::create_postgres_database("store_contract").await?;
        let store = SqlStore::connect(&url, 4).await.unwrap();
        Some(PgDb {
            store: Arc::new(store),
            admin_url,
            name,
            url,
        })
    }

    async fn drop_database(self) {
        self.store.close().await;
        crate::helpers::drop_postgres_database(&self.admin_url, &self.name).await;
    }
}

/// Runs a behaviour against every store: the rusqlite store and the sqlx store
/// on a SQLite file, and the sqlx store on PostgreSQL when a server is reachable.
macro_rules! every_store {
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
            #[tokio::test]
            async fn postgres_store() {
                use futures_util::FutureExt;
                let Some(db) = super::PgDb::create().await else {
                    return;
                };
                let outcome = std::panic::AssertUnwindSafe(super::$name(db.store.as_ref()))
                    .catch_unwind()
                    .await;
                db.drop_database().await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
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
every_store!(codes_are_single_use_and_a_replay_during_minting_blocks_the_grant);

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
every_store!(a_replay_after_the_grant_reports_it_and_revoking_cascades);

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
every_store!(concurrent_redemptions_of_one_code_yield_exactly_one_fresh);

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
every_store!(a_refused_grant_does_not_affect_one_committed_with_it);

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
every_store!(a_refresh_token_rotates_once);

async fn purge_removes_only_what_expired(store: &dyn Store) {
    let now = NOW + 100_000;
    store.insert_code(&code("old", now - 7200)).await.unwrap();
    store.insert_code(&code("recent", now - 60)).await.unwrap();
    let mut expired = issued("g7", "j7", Some("r7"));
    expired.access.expires_at = now - 7200;
    if let Some(r) = expired.refresh.as_mut() {
        r.expires_at = now - 1;
    }
    store
        .create_grant(&grant("g7"), &expired, None, None)
        .await
        .unwrap();
    let mut live = issued("g8", "j8", Some("r8"));
    live.access.expires_at = now + 900;
    if let Some(r) = live.refresh.as_mut() {
        r.expires_at = now + 86_400;
    }
    store
        .create_grant(&grant("g8"), &live, None, None)
        .await
        .unwrap();
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
every_store!(purge_removes_only_what_expired);

fn client(id: &str, name: &str) -> ClientRecord {
    let metadata = serde_json::from_value(serde_json::json!({
        "redirect_uris": ["http://127.0.0.1:9/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": name,
        "scope": "mcp:read",
        "application_type": "native",
    }))
    .unwrap();
    ClientRecord {
        client_id: id.into(),
        client_name: Some(name.into()),
        secret_hash: None,
        metadata,
        source: ClientSource::Dcr,
        registration_token_hash: Some("rat".into()),
        can_introspect: false,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn key(kid: &str, created_at: i64) -> auth_server::domain::keys::StoredKey {
    auth_server::domain::keys::StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        private_pkcs8_b64: "private".into(),
        public_b64: "public".into(),
        created_at,
        retired_at: None,
    }
}

async fn users_clients_keys_sessions_and_settings_round_trip(store: &dyn Store) {
    store.ping().await.unwrap();
    let mut alice = user("alice");
    alice.email = Some("alice@example.com".into());
    store.create_user(&alice).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    assert!(matches!(
        store.create_user(&user("alice")).await,
        Err(StoreError::Conflict(_))
    ));
    let found = store.find_user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(found.id, "id-alice");
    assert_eq!(found.email.as_deref(), Some("alice@example.com"));
    assert!(!found.disabled);
    assert_eq!(
        store
            .find_user_by_id("id-bob")
            .await
            .unwrap()
            .unwrap()
            .username,
        "bob"
    );
    assert!(store.find_user_by_id("nobody").await.unwrap().is_none());
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(store
        .set_password("alice", "new-hash", NOW + 1)
        .await
        .unwrap());
    assert!(!store.set_password("nobody", "x", NOW + 1).await.unwrap());
    assert_eq!(
        store
            .find_user_by_name("alice")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new-hash"
    );

    store.insert_client(&client("c-1", "One")).await.unwrap();
    assert!(matches!(
        store.insert_client(&client("c-1", "One")).await,
        Err(StoreError::Conflict(_))
    ));
    let mut changed = client("c-1", "Renamed");
    changed.can_introspect = true;
    changed.updated_at = NOW + 5;
    store.upsert_client(&changed).await.unwrap();
    store.upsert_client(&client("c-2", "Two")).await.unwrap();
    let c1 = store.find_client("c-1").await.unwrap().unwrap();
    assert_eq!(c1.client_name.as_deref(), Some("Renamed"));
    assert!(c1.can_introspect);
    assert_eq!(c1.registration_token_hash.as_deref(), Some("rat"));
    assert_eq!((c1.created_at, c1.updated_at), (NOW, NOW + 5));
    assert_eq!(c1.metadata.redirect_uris, ["http://127.0.0.1:9/cb"]);
    let mut metadata = c1.metadata.clone();
    metadata.client_name = Some("Third name".into());
    assert!(store
        .update_client_metadata("c-1", &metadata, NOW + 9)
        .await
        .unwrap());
    assert!(!store
        .update_client_metadata("nobody", &metadata, NOW + 9)
        .await
        .unwrap());
    let c1 = store.find_client("c-1").await.unwrap().unwrap();
    assert_eq!(c1.display_name(), "Third name");
    assert_eq!(c1.metadata.client_name.as_deref(), Some("Third name"));
    let ids: Vec<String> = store
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["c-1", "c-2"]);

    assert!(store.insert_first_key(&key("k1", NOW)).await.unwrap());
    assert!(!store.insert_first_key(&key("k0", NOW)).await.unwrap());
    store
        .rotate_keys(&key("k2", NOW + 10), NOW + 10)
        .await
        .unwrap();
    let keys = store.list_keys().await.unwrap();
    let summary: Vec<(&str, Option<i64>)> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.retired_at))
        .collect();
    assert_eq!(summary, [("k1", Some(NOW + 10)), ("k2", None)]);

    let session = SessionRecord {
        id_hash: "s1".into(),
        user_id: "id-alice".into(),
        auth_time: NOW,
        expires_at: NOW + 60,
    };
    store.create_session(&session).await.unwrap();
    assert_eq!(
        store
            .find_session("s1", NOW)
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "id-alice"
    );
    assert!(store.find_session("s1", NOW + 60).await.unwrap().is_none());
    store.delete_session("s1").await.unwrap();
    assert!(store.find_session("s1", NOW).await.unwrap().is_none());

    assert!(store
        .find_consent("id-alice", "c-1")
        .await
        .unwrap()
        .is_none());
    store
        .save_consent("id-alice", "c-1", "mcp:read", NOW)
        .await
        .unwrap();
    store
        .save_consent("id-alice", "c-1", "mcp:read mcp:write", NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_consent("id-alice", "c-1")
            .await
            .unwrap()
            .as_deref(),
        Some("mcp:read mcp:write")
    );

    assert_eq!(store.get_or_init_kv("k", "first").await.unwrap(), "first");
    assert_eq!(store.get_or_init_kv("k", "second").await.unwrap(), "first");

    store.audit(&audit("one")).await.unwrap();
    let mut later = audit("two");
    later.at_ms += 1;
    later.username = None;
    store.audit(&later).await.unwrap();
    let log = store.list_audit(1).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].detail.as_str(), log[0].username.as_deref()),
        ("two", None)
    );
}
every_store!(users_clients_keys_sessions_and_settings_round_trip);

/// Re-sealing stored secrets writes all replacements or none: a row that no
/// longer holds the value that was read stops the whole batch.
async fn secrets_are_replaced_all_or_nothing(store: &dyn Store) {
    use auth_server::domain::key_encryption::SecretSlot;
    assert_eq!(store.find_kv("cookie_key").await.unwrap(), None);
    store.get_or_init_kv("cookie_key", "plain").await.unwrap();
    assert!(store.insert_first_key(&key("k1", NOW)).await.unwrap());
    let update = |slot: SecretSlot, stored: &str, replacement: &str| SecretUpdate {
        slot,
        stored: stored.into(),
        replacement: replacement.into(),
    };
    let key_slot = SecretSlot::SigningKey("k1".into());
    let cookie_slot = SecretSlot::Setting("cookie_key".into());

    let stale = [
        update(key_slot.clone(), "private", "sealed-key"),
        update(cookie_slot.clone(), "not what is stored", "sealed-cookie"),
    ];
    assert!(store.replace_secrets(&stale).await.is_err());
    assert_eq!(
        store.list_keys().await.unwrap()[0].private_pkcs8_b64,
        "private"
    );
    assert_eq!(
        store.find_kv("cookie_key").await.unwrap().as_deref(),
        Some("plain")
    );

    let fresh = [
        update(key_slot, "private", "sealed-key"),
        update(cookie_slot, "plain", "sealed-cookie"),
    ];
    store.replace_secrets(&fresh).await.unwrap();
    assert_eq!(
        store.list_keys().await.unwrap()[0].private_pkcs8_b64,
        "sealed-key"
    );
    assert_eq!(
        store.find_kv("cookie_key").await.unwrap().as_deref(),
        Some("sealed-cookie")
    );
    store.replace_secrets(&[]).await.unwrap();
}
every_store!(secrets_are_replaced_all_or_nothing);

/// A user grant for `user-1` on `client-1` with one access and one refresh token.
async fn granted(store: &dyn Store, id: &str) {
    store
        .create_grant(
            &grant(id),
            &issued(id, &format!("{id}-at"), Some(&format!("{id}-rt"))),
            None,
            None,
        )
        .await
        .unwrap();
}

/// The user `alice` (id `user-1`) and the client `client-1`, the owners of
/// [`granted`] grants.
async fn alice_and_client_1(store: &dyn Store) {
    let mut alice = user("alice");
    alice.id = "user-1".into();
    store.create_user(&alice).await.unwrap();
    store
        .insert_client(&client("client-1", "One"))
        .await
        .unwrap();
}

/// The feed's entries as (kind, subject, expiry), in feed order.
async fn feed(store: &dyn Store, after: i64) -> Vec<(RevokedKind, String, i64)> {
    store
        .revocations_after(after, 100)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.kind, e.subject, e.expires_at))
        .collect()
}

/// Every revocation lands in the revocation feed from the store's own cascade, so
/// no revocation path (code replay, `/revoke`, refresh reuse, admin API, user
/// disable, client delete) can leave resource servers uninformed.
async fn every_revocation_is_recorded_in_the_feed(store: &dyn Store) {
    alice_and_client_1(store).await;
    for id in ["g1", "g2", "g3"] {
        granted(store, id).await;
    }
    let mut client_token = issued("none", "cc-at", None).access;
    client_token.grant_id = None;
    client_token.user_id = None;
    store.insert_access_token(&client_token).await.unwrap();
    let empty = store.revocations_after(0, 100).await.unwrap();
    assert_eq!((empty.head, empty.oldest), (0, 0));
    assert!(empty.entries.is_empty());

    let exp = NOW + 900;
    // A grant (what a code replay, `/revoke` of a refresh token, reuse detection
    // and the admin API do), once.
    assert!(store.revoke_grant("g1", NOW, false).await.unwrap());
    assert!(!store.revoke_grant("g1", NOW, false).await.unwrap());
    // One access token, once.
    assert!(store.revoke_access_token("g2-at", NOW).await.unwrap());
    assert!(!store.revoke_access_token("g2-at", NOW).await.unwrap());
    assert_eq!(
        feed(store, 0).await,
        vec![
            (RevokedKind::Grant, "g1".to_string(), exp),
            (RevokedKind::Token, "g2-at".to_string(), exp),
        ]
    );
    // Disabling the user revokes the rest of their grants.
    assert!(store.set_disabled("alice", true, NOW).await.unwrap());
    let mut disabled = feed(store, 2).await;
    disabled.sort();
    assert_eq!(
        disabled,
        vec![
            (RevokedKind::Grant, "g2".to_string(), exp),
            (RevokedKind::Grant, "g3".to_string(), exp),
        ]
    );
    // Deleting the client covers its tokens that belong to no grant.
    assert!(store.delete_client("client-1", NOW).await.unwrap());
    assert_eq!(
        feed(store, 4).await,
        vec![(RevokedKind::Token, "cc-at".to_string(), exp)]
    );

    let page = store.revocations_after(0, 2).await.unwrap();
    assert_eq!((page.head, page.oldest), (5, 1));
    let positions: Vec<i64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!(positions, vec![1, 2], "in order, at most the limit");

    // Kept an hour past the expiry of what they cover, then purged; positions
    // never go back.
    store.purge_expired(exp + 3600).await.unwrap();
    assert_eq!(feed(store, 0).await.len(), 5);
    store.purge_expired(exp + 3601).await.unwrap();
    let purged = store.revocations_after(0, 100).await.unwrap();
    assert_eq!((purged.head, purged.entries.len()), (5, 0));
}
every_store!(every_revocation_is_recorded_in_the_feed);

fn session_of_user_1() -> SessionRecord {
    SessionRecord {
        id_hash: "s1".into(),
        user_id: "user-1".into(),
        auth_time: NOW,
        expires_at: NOW + 600,
    }
}

async fn disabling_a_user_or_deleting_a_client_revokes_what_it_holds(store: &dyn Store) {
    alice_and_client_1(store).await;
    granted(store, "g1").await;
    granted(store, "g2").await;
    store
        .save_consent("user-1", "client-1", "mcp:read", NOW)
        .await
        .unwrap();

    // The admin views list live grants with their live tokens.
    let active = store.active_grants(NOW).await.unwrap();
    let ids: Vec<(&str, &str, Option<&str>)> = active
        .iter()
        .map(|s| {
            (
                s.grant.id.as_str(),
                s.username.as_str(),
                s.client_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [("g1", "alice", Some("One")), ("g2", "alice", Some("One"))]
    );
    assert_eq!(active[0].token_ids, ["g1-at"]);
    let stats = store.user_stats(NOW).await.unwrap();
    assert_eq!(
        (
            stats[0].username.as_str(),
            stats[0].active_grants,
            stats[0].disabled
        ),
        ("alice", 2, false)
    );

    // Revoking with `forget_consent` forgets the remembered consent.
    assert!(store.revoke_grant("g1", NOW + 1, true).await.unwrap());
    assert!(store
        .find_consent("user-1", "client-1")
        .await
        .unwrap()
        .is_none());
    assert!(store.revoke_access_token("g2-at", NOW + 1).await.unwrap());
    assert!(!store.revoke_access_token("g2-at", NOW + 2).await.unwrap());
    assert!(store.active_grants(NOW + 2).await.unwrap()[0]
        .token_ids
        .is_empty());

    // Disabling revokes the user's grants and ends their sessions.
    granted(store, "g3").await;
    store.create_session(&session_of_user_1()).await.unwrap();
    assert!(store.set_disabled("alice", true, NOW + 3).await.unwrap());
    assert!(!store.set_disabled("nobody", true, NOW + 3).await.unwrap());
    assert!(
        store
            .find_user_by_name("alice")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(store.find_session("s1", NOW).await.unwrap().is_none());
    for g in ["g2", "g3"] {
        assert!(store
            .find_grant(g)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
        assert!(store
            .find_refresh(&format!("{g}-rt"))
            .await
            .unwrap()
            .is_none());
    }
    assert_eq!(
        store
            .find_access_token("g3-at")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 3)
    );
    assert!(store.active_grants(NOW + 3).await.unwrap().is_empty());
    assert!(store.set_disabled("alice", false, NOW + 4).await.unwrap());
    assert!(
        !store
            .find_user_by_name("alice")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );

    // Deleting a client revokes its grants and tokens and forgets its codes and consents.
    granted(store, "g4").await;
    let mut client_token = issued("g4", "cc-at", None).access;
    client_token.grant_id = None;
    client_token.user_id = None;
    store.insert_access_token(&client_token).await.unwrap();
    store.insert_code(&code("c1", NOW + 60)).await.unwrap();
    store
        .save_consent("user-1", "client-1", "mcp:read", NOW)
        .await
        .unwrap();
    assert!(store.delete_client("client-1", NOW + 5).await.unwrap());
    assert!(!store.delete_client("client-1", NOW + 5).await.unwrap());
    assert!(store.find_client("client-1").await.unwrap().is_none());
    assert_eq!(
        store.find_grant("g4").await.unwrap().unwrap().revoked_at,
        Some(NOW + 5)
    );
    for jti in ["g4-at", "cc-at"] {
        assert_eq!(
            store
                .find_access_token(jti)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(NOW + 5)
        );
    }
    assert!(store.find_refresh("g4-rt").await.unwrap().is_none());
    assert!(matches!(
        store.redeem_code("c1", NOW).await.unwrap(),
        CodeRedemption::NotFound
    ));
    assert!(store
        .find_consent("user-1", "client-1")
        .await
        .unwrap()
        .is_none());
}
every_store!(disabling_a_user_or_deleting_a_client_revokes_what_it_holds);

// ----- several connections (replicas) at once -----

/// Replicas starting together on an empty database each try to store the first
/// signing key and the cookie key: one key is stored, and every caller reads the
/// one cookie key that was.
async fn first_keys_stored_at_once_leave_one_of_each(store: &dyn Store) {
    let keys: Vec<_> = (0..6).map(|i| key(&format!("k{i}"), NOW)).collect();
    let inserted = futures_util::future::join_all(keys.iter().map(|k| store.insert_first_key(k)))
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(inserted, 1);
    let active: Vec<_> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .collect();
    assert_eq!(active.len(), 1);
    let inits: Vec<String> = (0..6).map(|i| format!("cookie-{i}")).collect();
    let seen = futures_util::future::join_all(
        inits
            .iter()
            .map(|init| store.get_or_init_kv("cookie_key", init)),
    )
    .await;
    let seen: std::collections::HashSet<String> = seen.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        seen.len(),
        1,
        "every caller reads the one stored value: {seen:?}"
    );
    assert!(inits.contains(seen.iter().next().unwrap()));
}
every_store!(first_keys_stored_at_once_leave_one_of_each);

/// A family revoked (refresh reuse) while another request rotates it or adds a
/// grace-window token, at the same time on other connections: whichever goes first,
/// the family ends with no live token, and a write after the revocation stores
/// nothing.
async fn tokens_added_while_the_family_is_revoked_are_revoked_or_refused(store: &dyn Store) {
    for round in 0..10 {
        let g = format!("g-race-{round}");
        granted(store, &g).await;
        let next = issued(&g, &format!("{g}-at2"), Some(&format!("{g}-rt2")));
        let extra = issued(&g, &format!("{g}-at3"), None);
        let first_refresh = format!("{g}-rt");
        let (rotated, added, revoked) = tokio::join!(
            store.rotate_refresh(&first_refresh, NOW + 1, &next),
            store.add_tokens(&extra),
            store.revoke_grant(&g, NOW + 1, false),
        );
        assert!(revoked.unwrap(), "round {round}");
        let (rotated, added) = (rotated.unwrap(), added.unwrap());
        for jti in [format!("{g}-at"), format!("{g}-at2"), format!("{g}-at3")] {
            if let Some(token) = store.find_access_token(&jti).await.unwrap() {
                assert!(
                    token.revoked_at.is_some(),
                    "round {round}: {jti} is live (rotated {rotated}, added {added})"
                );
            }
        }
        assert!(store
            .find_refresh(&format!("{g}-rt2"))
            .await
            .unwrap()
            .is_none());
        // After the revocation nothing more is stored.
        let late = issued(&g, &format!("{g}-at4"), Some(&format!("{g}-rt4")));
        assert!(!store.add_tokens(&late).await.unwrap());
        assert!(!store
            .rotate_refresh(&format!("{g}-rt"), NOW + 2, &late)
            .await
            .unwrap());
        assert!(store
            .find_access_token(&format!("{g}-at4"))
            .await
            .unwrap()
            .is_none());
    }
}
every_store!(tokens_added_while_the_family_is_revoked_are_revoked_or_refused);

/// A code replayed while its first redemption stores the grant, over and over:
/// either the grant was stored first and the replay reports it (to be revoked),
/// or the replay came first and the grant is refused. Never a grant the replay
/// did not see.
async fn a_replay_racing_the_grant_either_sees_it_or_blocks_it(store: &dyn Store) {
    for round in 0..20 {
        let c = format!("c-race-{round}");
        let g = format!("g-race-{round}");
        store.insert_code(&code(&c, NOW + 60)).await.unwrap();
        assert!(matches!(
            store.redeem_code(&c, NOW).await.unwrap(),
            CodeRedemption::Fresh(_)
        ));
        let tokens = issued(&g, &format!("{g}-at"), None);
        let record = grant(&g);
        let (granted, replay) = tokio::join!(
            store.create_grant(&record, &tokens, Some(&c), None),
            store.redeem_code(&c, NOW + 1),
        );
        let CodeRedemption::Replayed(seen) = replay.unwrap() else {
            panic!("round {round}: a second redemption must be a replay");
        };
        match granted {
            Ok(()) => assert_eq!(seen.grant_id.as_deref(), Some(g.as_str()), "round {round}"),
            Err(StoreError::Conflict(_)) => {
                assert_eq!(seen.grant_id, None, "round {round}");
                assert!(store.find_grant(&g).await.unwrap().is_none());
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}
every_store!(a_replay_racing_the_grant_either_sees_it_or_blocks_it);

/// Replicas starting together on an empty PostgreSQL database: sqlx's migrator
/// takes an advisory lock before it touches the ledger, so one applies the schema
/// while the others wait and then find it applied; a restart applies nothing.
#[tokio::test]
async fn stores_opened_together_on_postgres_apply_the_schema_once() {
    use sqlx::Connection as _;
    let Some(url) = crate::helpers::postgres_test_database("migrate").await else {
        return;
    };
    let ledger = || async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let rows: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        rows
    };
    for _ in 0..2 {
        let stores =
            futures_util::future::join_all((0..8).map(|_| SqlStore::connect(&url, 2))).await;
        for store in stores {
            let store = store.unwrap();
            store.ping().await.unwrap();
            store.close().await;
        }
        assert_eq!(
            ledger().await,
            vec![(1, true), (2, true), (3, true), (4, true)]
        );
    }
}

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
        idp: None,
        idp_subject: None,
    }
}

#[tokio::test]
async fn a_database_created_by_the_sqlx_store_opens_without_rerunning_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = SqlStore::connect(&sqlite_url(&path), 2).await.unwrap();
    old.create_user(&user("alice")).await.unwrap();
    old.close().await;
    assert_eq!(
        ledger(&path),
        vec![(1, true), (2, true), (3, true), (4, true)]
    );

    let store = auth_server::storage::open(&sqlite_url(&path), 2)
        .await
        .unwrap();
    assert!(store.find_user_by_name("alice").await.unwrap().is_some());
    store.create_user(&user("bob")).await.unwrap();
    drop(store);
    assert_eq!(
        ledger(&path),
        vec![(1, true), (2, true), (3, true), (4, true)],
        "nothing re-applied"
    );

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
    assert_eq!(
        ledger(&path),
        vec![(1, true), (2, true), (3, true), (4, true)]
    );
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

// ----- cascades are atomic -----

/// Where a test database lives, to break it from outside the store.
enum Database<'a> {
    SqliteFile(&'a std::path::Path),
    Postgres(&'a str),
}

impl Database<'_> {
    /// Makes every deletion of a refresh token fail. Every cascade below deletes
    /// refresh tokens after it has changed other rows, so a cascade that is not
    /// one transaction would leave those changes behind.
    async fn refuse_refresh_token_deletion(&self) {
        match self {
            Database::SqliteFile(path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(
                    "CREATE TRIGGER refuse_refresh_token_deletion \
                     BEFORE DELETE ON refresh_tokens \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                )
                .unwrap(),
            Database::Postgres(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                for sql in [
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                    "CREATE TRIGGER refuse_refresh_token_deletion \
                     BEFORE DELETE ON refresh_tokens FOR EACH ROW EXECUTE FUNCTION refuse()",
                ] {
                    sqlx::query(sql).execute(&mut conn).await.unwrap();
                }
                conn.close().await.unwrap();
            }
        }
    }
}

async fn cascades_are_atomic(store: &dyn Store, database: Database<'_>) {
    alice_and_client_1(store).await;
    granted(store, "g1").await;
    store
        .save_consent("user-1", "client-1", "mcp:read", NOW)
        .await
        .unwrap();
    store.insert_code(&code("c1", NOW + 60)).await.unwrap();
    store.create_session(&session_of_user_1()).await.unwrap();
    database.refuse_refresh_token_deletion().await;

    assert!(store.revoke_grant("g1", NOW + 1, true).await.is_err());
    assert!(store.set_disabled("alice", true, NOW + 1).await.is_err());
    assert!(store.delete_client("client-1", NOW + 1).await.is_err());

    // Every row is as it was.
    assert_eq!(
        store.find_grant("g1").await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(
        store
            .find_access_token("g1-at")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    assert!(store.find_refresh("g1-rt").await.unwrap().is_some());
    assert_eq!(
        store.find_consent("user-1", "client-1").await.unwrap(),
        Some("mcp:read".into())
    );
    assert!(
        !store
            .find_user_by_name("alice")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(store.find_session("s1", NOW).await.unwrap().is_some());
    assert!(store.find_client("client-1").await.unwrap().is_some());
    assert!(matches!(
        store.redeem_code("c1", NOW).await.unwrap(),
        CodeRedemption::Fresh(_)
    ));
}

mod cascades_are_atomic {
    use super::Database;

    #[tokio::test]
    async fn rusqlite_store() {
        let db = super::rusqlite_store();
        let path = db.path();
        super::cascades_are_atomic(db.store.as_ref(), Database::SqliteFile(&path)).await;
    }

    #[tokio::test]
    async fn sqlx_store() {
        let db = super::sqlx_store().await;
        let path = db.path();
        super::cascades_are_atomic(db.store.as_ref(), Database::SqliteFile(&path)).await;
    }

    #[tokio::test]
    async fn postgres_store() {
        use futures_util::FutureExt;
        let Some(db) = super::PgDb::create().await else {
            return;
        };
        let outcome = std::panic::AssertUnwindSafe(super::cascades_are_atomic(
            db.store.as_ref(),
            Database::Postgres(&db.url),
        ))
        .catch_unwind()
        .await;
        db.drop_database().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

fn federated(idp: &str, subject: &str, username: &str) -> UserRecord {
    UserRecord {
        id: format!("id-{idp}-{subject}"),
        username: username.into(),
        password_hash: "!federated".into(),
        role: auth_server::domain::scope_policy::Role::User,
        email: Some(format!("{username}@example.com")),
        name: Some("First Name".into()),
        disabled: false,
        created_at: NOW,
        idp: Some(idp.into()),
        idp_subject: Some(subject.into()),
    }
}

async fn federated_users_are_keyed_by_provider_and_subject(store: &dyn Store) {
    use auth_server::domain::scope_policy::Role;
    // A local user already holds the name "alice".
    store.create_user(&user("alice")).await.unwrap();
    let first = store
        .save_federated_user(&federated("corp", "s-1", "alice"))
        .await
        .unwrap();
    assert_eq!(
        first.username, "corp:alice",
        "a taken name falls back to idp:name"
    );
    assert_eq!(first.idp.as_deref(), Some("corp"));
    assert_eq!(first.source(), "idp:corp");
    // The same subject at another provider is another user.
    let other = store
        .save_federated_user(&federated("gh", "s-1", "bob"))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(other.username, "bob");
    // A later sign-in updates role, email and name and keeps the id (a new id in
    // the record is ignored).
    let mut later = federated("corp", "s-1", "alice2");
    later.id = "another-id".into();
    later.role = Role::Admin;
    later.email = Some("new@example.com".into());
    later.name = None;
    let updated = store.save_federated_user(&later).await.unwrap();
    assert_eq!(updated.id, first.id);
    assert_eq!(updated.role, Role::Admin);
    assert_eq!(updated.email.as_deref(), Some("new@example.com"));
    assert_eq!(updated.name, None);
    assert_eq!(
        updated.username, "alice2",
        "renamed upstream, the name was free"
    );
    // Renaming onto a taken name keeps the old one.
    let mut taken = later.clone();
    taken.username = "bob".into();
    assert_eq!(
        store.save_federated_user(&taken).await.unwrap().username,
        "alice2"
    );
    // Disabled stays disabled whatever the provider says.
    assert!(store.set_disabled("alice2", true, NOW).await.unwrap());
    assert!(store.save_federated_user(&later).await.unwrap().disabled);
    let found = store
        .find_user_by_identity("corp", "s-1")
        .await
        .unwrap()
        .unwrap();
    assert!(found.disabled);
    assert!(store
        .find_user_by_identity("corp", "s-2")
        .await
        .unwrap()
        .is_none());
    let local = store.find_user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(
        (local.idp.clone(), local.source()),
        (None, "local".to_string())
    );
}
every_store!(federated_users_are_keyed_by_provider_and_subject);

fn pending(state_hash: &str, expires_at: i64) -> UpstreamLoginRecord {
    UpstreamLoginRecord {
        state_hash: state_hash.into(),
        idp: "corp".into(),
        browser_hash: "browser".into(),
        nonce_hash: "nonce".into(),
        pkce_verifier: "verifier".into(),
        request: "{\"client_id\":\"c\"}".into(),
        created_at: NOW,
        expires_at,
    }
}

async fn pending_upstream_logins_are_taken_once_and_purged(store: &dyn Store) {
    store
        .insert_upstream_login(&pending("s1", NOW + 600))
        .await
        .unwrap();
    store
        .insert_upstream_login(&pending("old", NOW - 1))
        .await
        .unwrap();
    assert!(store
        .insert_upstream_login(&pending("s1", NOW + 600))
        .await
        .is_err());
    let taken = store.take_upstream_login("s1").await.unwrap().unwrap();
    assert_eq!(taken.idp, "corp");
    assert_eq!(taken.pkce_verifier, "verifier");
    assert_eq!(taken.request, "{\"client_id\":\"c\"}");
    assert_eq!(taken.expires_at, NOW + 600);
    assert!(store.take_upstream_login("s1").await.unwrap().is_none());
    assert!(store.purge_expired(NOW).await.unwrap() >= 1);
    assert!(store.take_upstream_login("old").await.unwrap().is_none());
}
every_store!(pending_upstream_logins_are_taken_once_and_purged);

async fn concurrent_first_sign_ins_create_one_user(store: &dyn Store) {
    let racer = federated("corp", "race", "racer");
    let runs = (0..4).map(|_| store.save_federated_user(&racer));
    let users = futures_util::future::join_all(runs).await;
    let ids: std::collections::HashSet<String> = users.into_iter().map(|u| u.unwrap().id).collect();
    assert_eq!(ids.len(), 1);
}
every_store!(concurrent_first_sign_ins_create_one_user);

async fn the_last_username_fallback_cannot_be_squatted(store: &dyn Store) {
    // Every name a GitHub user (id 42, login "alice") could get before the last
    // fallback is held already: "alice" by another provider's user, the two
    // `github:` names by local accounts an administrator created.
    store
        .save_federated_user(&federated("corp", "a1", "alice"))
        .await
        .unwrap();
    store.create_user(&user("github:alice")).await.unwrap();
    store.create_user(&user("github:42")).await.unwrap();
    let victim = store
        .save_federated_user(&federated("github", "42", "alice"))
        .await
        .expect("a first sign-in always gets a name");
    assert_eq!(victim.username, "github:id-github-42");
    assert_eq!(victim.idp_subject.as_deref(), Some("42"));
    // And the next sign-in finds the same user.
    let again = store
        .save_federated_user(&federated("github", "42", "alice"))
        .await
        .unwrap();
    assert_eq!(again.id, victim.id);
}
every_store!(the_last_username_fallback_cannot_be_squatted);

async fn a_disabled_federated_user_is_left_as_stored(store: &dyn Store) {
    use auth_server::domain::scope_policy::Role;
    let x = store
        .save_federated_user(&federated("github", "1", "alice"))
        .await
        .unwrap();
    assert!(store.set_disabled("alice", true, NOW).await.unwrap());
    // Disabled, the user signs in upstream again with a new name, admin groups
    // and another email: nothing of it is written.
    let mut again = federated("github", "1", "alice-renamed");
    again.role = Role::Admin;
    again.email = Some("other@evil.example".into());
    let after = store.save_federated_user(&again).await.unwrap();
    assert!(after.disabled);
    assert_eq!(after.id, x.id);
    assert_eq!(after.username, "alice");
    assert_eq!(after.role, Role::User);
    assert_eq!(after.email, x.email);
    // The name stays taken: another provider's "alice" falls back.
    let y = store
        .save_federated_user(&federated("corp", "9", "alice"))
        .await
        .unwrap();
    assert_eq!(y.username, "corp:alice");
    let held = store.find_user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(
        held.id, x.id,
        "`user enable alice` still names the same person"
    );
}
every_store!(a_disabled_federated_user_is_left_as_stored);

async fn concurrent_renames_to_one_name_give_it_to_one_user(store: &dyn Store) {
    for round in 0..20 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let x = store
            .save_federated_user(&federated("corp", &a, &a))
            .await
            .unwrap();
        let y = store
            .save_federated_user(&federated("corp", &b, &b))
            .await
            .unwrap();
        // Both rename themselves upstream to the same free name at once.
        let wanted = format!("c{round}");
        let (ux, uy) = (
            federated("corp", &a, &wanted),
            federated("corp", &b, &wanted),
        );
        let (rx, ry) = tokio::join!(
            store.save_federated_user(&ux),
            store.save_federated_user(&uy)
        );
        let (rx, ry) = (rx.expect("no error"), ry.expect("no error"));
        let winners = [&rx, &ry].iter().filter(|u| u.username == wanted).count();
        assert_eq!(
            winners, 1,
            "round {round}: {} / {}",
            rx.username, ry.username
        );
        assert!(rx.username == wanted || rx.username == x.username);
        assert!(ry.username == wanted || ry.username == y.username);
    }
}
every_store!(concurrent_renames_to_one_name_give_it_to_one_user);
