//! Every store operation and cascade, written once over [`Exec`] and run by both
//! stores. A store decides only where an operation runs: on which connection, and
//! in which transaction.
//!
//! Three rules for every operation here:
//! - One of more than one statement (a cascade, or a check then a write) takes
//!   `&mut impl InTransaction`, so that it cannot be run outside a transaction;
//!   a single statement takes `&mut impl Exec`.
//! - A check that a later write relies on either is that write (a conditional
//!   `UPDATE ... WHERE used_at IS NULL`, which PostgreSQL re-checks after waiting for
//!   a concurrent writer of the row), or reads with [`fetch_locked`]
//!   (`SELECT ... FOR UPDATE` on PostgreSQL). Replicas share one PostgreSQL
//!   database at its default isolation (READ COMMITTED), so these locks are what
//!   keeps a code single-use, a refresh token rotating once and a revoked family
//!   revoked when requests for them land on different replicas at the same time.
//!   Rows are locked in one order, grant before its tokens, grants in id order.
//! - It awaits nothing but `Exec` methods and other operations of this file: no
//!   lock, channel, timer or I/O of its own. The rusqlite store's `Exec` never
//!   suspends, so that store runs an operation to completion in one poll
//!   (`sqlite::run`); anything else that suspended would fail there ("a SQLite
//!   operation suspended"), and trips a debug assertion in tests.

use std::collections::HashMap;

use super::exec::{args, fetch_locked, fetch_one, Arg, Exec, InTransaction};
use super::queries as q;
use super::*;

fn metadata_json(metadata: &ClientMetadata) -> StoreResult<String> {
    serde_json::to_string(metadata).map_err(|e| StoreError::Corrupt(e.to_string()))
}

// ----- users -----

pub(crate) async fn create_user(e: &mut impl Exec, u: &UserRecord) -> StoreResult<()> {
    let inserted = e
        .execute(
            q::INSERT_USER,
            args![
                &u.id,
                &u.username,
                &u.password_hash,
                u.role.as_str(),
                &u.email,
                &u.name,
                u.disabled,
                u.created_at,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("user {:?}", u.username)));
    }
    Ok(())
}

pub(crate) async fn find_user_by_name(
    e: &mut impl Exec,
    username: &str,
) -> StoreResult<Option<UserRecord>> {
    e.fetch_optional(q::USER_BY_NAME, args![username]).await
}

pub(crate) async fn find_user_by_id(
    e: &mut impl Exec,
    id: &str,
) -> StoreResult<Option<UserRecord>> {
    e.fetch_optional(q::USER_BY_ID, args![id]).await
}

pub(crate) async fn list_users(e: &mut impl Exec) -> StoreResult<Vec<UserRecord>> {
    e.fetch_all(q::LIST_USERS, args![]).await
}

pub(crate) async fn set_password(
    e: &mut impl Exec,
    username: &str,
    hash: &str,
    now: i64,
) -> StoreResult<bool> {
    Ok(e.execute(q::SET_PASSWORD, args![hash, now, username])
        .await?
        > 0)
}

/// Disabling also revokes the user's grants and ends their sessions.
pub(crate) async fn set_disabled(
    e: &mut impl InTransaction,
    username: &str,
    disabled: bool,
    now: i64,
) -> StoreResult<bool> {
    if e.execute(q::SET_DISABLED, args![disabled, now, username])
        .await?
        == 0
    {
        return Ok(false);
    }
    if disabled {
        let grants: Vec<String> = e.fetch_all(q::LIVE_GRANTS_OF_USER, args![username]).await?;
        for id in grants {
            revoke_grant(e, &id, now, false).await?;
        }
        e.execute(q::DELETE_SESSIONS_OF_USER, args![username])
            .await?;
    }
    Ok(true)
}

// ----- users from identity providers -----

pub(crate) async fn find_user_by_identity(
    e: &mut impl Exec,
    idp: &str,
    subject: &str,
) -> StoreResult<Option<UserRecord>> {
    e.fetch_optional(q::USER_BY_IDENTITY, args![idp, subject])
        .await
}

/// Runs `sql`; a unique violation counts as "taken" (0 rows), and leaves the
/// transaction usable. On PostgreSQL two transactions can both find a name free
/// and write it: the second fails on the unique index when the first commits.
async fn execute_unless_taken(
    e: &mut impl InTransaction,
    sql: &'static str,
    args: &[Arg<'_>],
) -> StoreResult<u64> {
    e.execute(q::SAVEPOINT_TAKEN, args![]).await?;
    match e.execute(sql, args).await {
        Ok(n) => {
            e.execute(q::RELEASE_TAKEN, args![]).await?;
            Ok(n)
        }
        Err(err) if err.is_unique_violation() => {
            e.execute(q::ROLLBACK_TO_TAKEN, args![]).await?;
            e.execute(q::RELEASE_TAKEN, args![]).await?;
            Ok(0)
        }
        Err(err) => Err(err),
    }
}

/// Just-in-time creation or update of a federated user (see `Store::save_federated_user`).
pub(crate) async fn save_federated_user(
    e: &mut impl InTransaction,
    u: &UserRecord,
) -> StoreResult<UserRecord> {
    let (Some(idp), Some(subject)) = (u.idp.as_deref(), u.idp_subject.as_deref()) else {
        return Err(StoreError::Failed(
            "a federated user needs its identity provider and subject".into(),
        ));
    };
    if let Some(stored) = find_user_by_identity(e, idp, subject).await? {
        // A disabled user keeps the row as the administrator left it: no new
        // name, role or email, and its name is not freed for anybody else.
        if stored.disabled {
            return Ok(stored);
        }
        e.execute(
            q::UPDATE_FEDERATED_USER,
            args![u.role.as_str(), &u.email, &u.name, u.created_at, &stored.id],
        )
        .await?;
        if stored.username != u.username {
            // Someone else holding the name (even one taken a moment ago by a
            // concurrent transaction) keeps it; this user keeps the old one.
            execute_unless_taken(e, q::RENAME_USER_IF_FREE, args![&u.username, &stored.id]).await?;
        }
    } else {
        // Upstream usernames never contain ':' (the service refuses them), so the
        // `<idp>:` names are ours; the last one is as unique as the row's id.
        let mut candidates = vec![u.username.clone()];
        if !u.username.contains(':') {
            candidates.push(format!("{idp}:{}", u.username));
        }
        candidates.push(format!("{idp}:{subject}"));
        candidates.push(format!("{idp}:{}", u.id));
        candidates.dedup();
        for username in &candidates {
            let inserted = execute_unless_taken(
                e,
                q::INSERT_FEDERATED_USER,
                args![
                    &u.id,
                    username,
                    &u.password_hash,
                    u.role.as_str(),
                    &u.email,
                    &u.name,
                    u.disabled,
                    u.created_at,
                    idp,
                    subject,
                ],
            )
            .await?;
            if inserted > 0 || find_user_by_identity(e, idp, subject).await?.is_some() {
                break;
            }
        }
    }
    find_user_by_identity(e, idp, subject)
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("user {:?}", u.username)))
}

pub(crate) async fn insert_upstream_login(
    e: &mut impl Exec,
    l: &UpstreamLoginRecord,
) -> StoreResult<()> {
    e.execute(
        q::INSERT_UPSTREAM_LOGIN,
        args![
            &l.state_hash,
            &l.idp,
            &l.browser_hash,
            &l.nonce_hash,
            &l.pkce_verifier,
            &l.request,
            l.created_at,
            l.expires_at,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn take_upstream_login(
    e: &mut impl Exec,
    state_hash: &str,
) -> StoreResult<Option<UpstreamLoginRecord>> {
    e.fetch_optional(q::TAKE_UPSTREAM_LOGIN, args![state_hash])
        .await
}

// ----- clients -----

fn client_args<'a>(c: &'a ClientRecord, metadata: &'a str) -> [Arg<'a>; 9] {
    *args![
        &c.client_id,
        &c.client_name,
        &c.secret_hash,
        metadata,
        c.source.as_str(),
        &c.registration_token_hash,
        c.can_introspect,
        c.created_at,
        c.updated_at,
    ]
}

pub(crate) async fn upsert_client(e: &mut impl Exec, c: &ClientRecord) -> StoreResult<()> {
    let metadata = metadata_json(&c.metadata)?;
    e.execute(q::UPSERT_CLIENT, &client_args(c, &metadata))
        .await?;
    Ok(())
}

pub(crate) async fn insert_client(e: &mut impl Exec, c: &ClientRecord) -> StoreResult<()> {
    let metadata = metadata_json(&c.metadata)?;
    if e.execute(q::INSERT_CLIENT, &client_args(c, &metadata))
        .await?
        == 0
    {
        return Err(StoreError::Conflict(format!("client {:?}", c.client_id)));
    }
    Ok(())
}

pub(crate) async fn find_client(
    e: &mut impl Exec,
    client_id: &str,
) -> StoreResult<Option<ClientRecord>> {
    e.fetch_optional(q::CLIENT_BY_ID, args![client_id]).await
}

pub(crate) async fn list_clients(e: &mut impl Exec) -> StoreResult<Vec<ClientRecord>> {
    e.fetch_all(q::LIST_CLIENTS, args![]).await
}

pub(crate) async fn update_client_metadata(
    e: &mut impl Exec,
    client_id: &str,
    metadata: &ClientMetadata,
    now: i64,
) -> StoreResult<bool> {
    let json = metadata_json(metadata)?;
    let changed = e
        .execute(
            q::UPDATE_CLIENT_METADATA,
            args![json.as_str(), &metadata.client_name, now, client_id],
        )
        .await?;
    Ok(changed > 0)
}

/// Deletes the client and revokes everything it holds.
pub(crate) async fn delete_client(
    e: &mut impl InTransaction,
    client_id: &str,
    now: i64,
) -> StoreResult<bool> {
    let grants: Vec<String> = e
        .fetch_all(q::LIVE_GRANTS_OF_CLIENT, args![client_id])
        .await?;
    for id in grants {
        revoke_grant(e, &id, now, false).await?;
    }
    let grantless: Vec<String> = e
        .fetch_all(
            q::LIVE_GRANTLESS_TOKENS_OF_CLIENT,
            args![client_id, still_accepted_after(now)],
        )
        .await?;
    e.execute(q::REVOKE_ACCESS_TOKENS_OF_CLIENT, args![now, client_id])
        .await?;
    for jti in grantless {
        record_token_revocation(e, &jti, now).await?;
    }
    e.execute(q::DELETE_CODES_OF_CLIENT, args![client_id])
        .await?;
    e.execute(q::DELETE_CONSENTS_OF_CLIENT, args![client_id])
        .await?;
    Ok(e.execute(q::DELETE_CLIENT, args![client_id]).await? > 0)
}

// ----- signing keys -----

pub(crate) async fn list_keys(e: &mut impl Exec) -> StoreResult<Vec<StoredKey>> {
    e.fetch_all(q::LIST_KEYS, args![]).await
}

/// Runs `sql` (one of the key inserts) for `k`; returns the rows inserted.
async fn insert_key(e: &mut impl Exec, sql: &'static str, k: &StoredKey) -> StoreResult<u64> {
    e.execute(
        sql,
        args![
            &k.kid,
            &k.alg,
            &k.private_pkcs8_b64,
            &k.public_b64,
            k.created_at
        ],
    )
    .await
}

/// Retires the active keys and stores `k` as the new one.
pub(crate) async fn rotate_keys(
    e: &mut impl InTransaction,
    k: &StoredKey,
    now: i64,
) -> StoreResult<()> {
    e.execute(q::RETIRE_KEYS, args![now]).await?;
    insert_key(e, q::INSERT_KEY, k).await?;
    Ok(())
}

/// Stores `k` only if no key is active; returns whether it did. One statement:
/// of replicas starting together on an empty database, one stores its key.
pub(crate) async fn insert_first_key(e: &mut impl Exec, k: &StoredKey) -> StoreResult<bool> {
    Ok(insert_key(e, q::INSERT_FIRST_KEY, k).await? == 1)
}

// ----- sessions and consent -----

pub(crate) async fn create_session(e: &mut impl Exec, s: &SessionRecord) -> StoreResult<()> {
    e.execute(
        q::INSERT_SESSION,
        args![&s.id_hash, &s.user_id, s.auth_time, s.expires_at],
    )
    .await?;
    Ok(())
}

pub(crate) async fn find_session(
    e: &mut impl Exec,
    id_hash: &str,
    now: i64,
) -> StoreResult<Option<SessionRecord>> {
    e.fetch_optional(q::LIVE_SESSION, args![id_hash, now]).await
}

pub(crate) async fn delete_session(e: &mut impl Exec, id_hash: &str) -> StoreResult<()> {
    e.execute(q::DELETE_SESSION, args![id_hash]).await?;
    Ok(())
}

pub(crate) async fn find_consent(
    e: &mut impl Exec,
    user_id: &str,
    client_id: &str,
) -> StoreResult<Option<String>> {
    e.fetch_optional(q::CONSENT, args![user_id, client_id])
        .await
}

pub(crate) async fn save_consent(
    e: &mut impl Exec,
    user_id: &str,
    client_id: &str,
    scope: &str,
    now: i64,
) -> StoreResult<()> {
    e.execute(q::SAVE_CONSENT, args![user_id, client_id, scope, now])
        .await?;
    Ok(())
}

// ----- codes and grants -----

pub(crate) async fn insert_code(e: &mut impl Exec, c: &AuthCodeRecord) -> StoreResult<()> {
    e.execute(
        q::INSERT_CODE,
        args![
            &c.code_hash,
            &c.client_id,
            &c.user_id,
            &c.redirect_uri,
            &c.scope,
            &c.resource,
            &c.code_challenge,
            &c.nonce,
            c.auth_time,
            c.created_at,
            c.expires_at,
        ],
    )
    .await?;
    Ok(())
}

/// Claims the code (single use). A replay reports the grant
/// the first redemption created, so that it can be revoked.
pub(crate) async fn redeem_code(
    e: &mut impl InTransaction,
    code_hash: &str,
    now: i64,
) -> StoreResult<CodeRedemption> {
    if let Some(record) = claim_code(e, code_hash, now).await? {
        return Ok(CodeRedemption::Fresh(record));
    }
    inspect_unclaimable_code(e, code_hash).await
}

/// The common redemption in one statement: marks the unused code used and returns
/// it. A single conditional `UPDATE` is atomic on its own (PostgreSQL re-checks
/// `used_at IS NULL` after waiting for a concurrent claim), so it needs no
/// transaction; `None` means a replay or no such code ([`inspect_unclaimable_code`]).
pub(crate) async fn claim_code(
    e: &mut impl Exec,
    code_hash: &str,
    now: i64,
) -> StoreResult<Option<AuthCodeRecord>> {
    e.fetch_optional(q::CLAIM_CODE, args![now, code_hash]).await
}

/// Why a code could not be claimed: a replay (reporting the grant of its first
/// redemption) or no such code.
pub(crate) async fn inspect_unclaimable_code(
    e: &mut impl InTransaction,
    code_hash: &str,
) -> StoreResult<CodeRedemption> {
    // Locked: a redemption's `create_grant` on another connection has either
    // linked its grant already, which is then reported to be revoked, or waits and
    // then finds the replay mark.
    let Some(record) = fetch_locked::<AuthCodeRecord>(e, &q::LOCK_CODE, args![code_hash]).await?
    else {
        return Ok(CodeRedemption::NotFound);
    };
    if record.grant_id.is_none() {
        // Replayed while the first redemption is still minting its tokens: mark
        // the code so that `create_grant` refuses to attach a grant.
        e.execute(q::LINK_CODE, args![REPLAYED_MARK, code_hash])
            .await?;
    }
    Ok(CodeRedemption::Replayed(record))
}

/// What `Store::create_grant` answers when [`create_grant`] refused the grant.
pub(crate) fn grant_refused() -> StoreError {
    StoreError::Conflict("a grant for this code".into())
}

/// Stores a grant with its first tokens and audit row, linking
/// the code first. `Ok(false)`: the code was replayed meanwhile (RFC 6749 §10.5)
/// or already has a grant, and nothing was written.
pub(crate) async fn create_grant(
    e: &mut impl InTransaction,
    g: &GrantRecord,
    issued: &Issued,
    code_hash: Option<&str>,
    audit: Option<&AuditRecord>,
) -> StoreResult<bool> {
    if let Some(hash) = code_hash {
        if e.execute(q::LINK_CODE, args![&g.id, hash]).await? != 1 {
            return Ok(false);
        }
    }
    e.execute(
        q::INSERT_GRANT,
        args![
            &g.id,
            &g.user_id,
            &g.client_id,
            &g.scope,
            &g.resource,
            g.auth_time,
            g.created_at,
            g.expires_at,
        ],
    )
    .await?;
    insert_tokens(e, issued, Some(g.expires_at)).await?;
    if let Some(a) = audit {
        insert_audit(e, a).await?;
    }
    Ok(true)
}

pub(crate) async fn find_grant(
    e: &mut impl Exec,
    grant_id: &str,
) -> StoreResult<Option<GrantRecord>> {
    e.fetch_optional(q::GRANT_BY_ID, args![grant_id]).await
}

/// Revokes a grant, its refresh family and its access tokens;
/// with `forget_consent` the user's remembered consent for the client goes too.
/// Returns whether the grant was live.
pub(crate) async fn revoke_grant(
    e: &mut impl InTransaction,
    grant_id: &str,
    now: i64,
    forget_consent: bool,
) -> StoreResult<bool> {
    // The grant first, locked: a token write to it (`rotate_refresh`, `add_tokens`)
    // waits for this revocation and then stores nothing, or finished before and its
    // tokens are revoked below.
    let Some((user_id, client_id)) =
        fetch_locked::<(Option<String>, String)>(e, &q::LOCK_GRANT_OWNER, args![grant_id]).await?
    else {
        return Ok(false);
    };
    let changed = e.execute(q::REVOKE_GRANT, args![now, grant_id]).await?;
    e.execute(q::REVOKE_ACCESS_TOKENS_OF_GRANT, args![now, grant_id])
        .await?;
    e.execute(q::DELETE_REFRESH_TOKENS_OF_GRANT, args![grant_id])
        .await?;
    if forget_consent {
        if let Some(user_id) = user_id {
            e.execute(q::DELETE_CONSENT, args![&user_id, &client_id])
                .await?;
        }
    }
    // Last: the feed position stays locked until the transaction commits.
    if changed > 0 {
        let seq: i64 = fetch_one(e, q::NEXT_REVOCATION_SEQ, args![]).await?;
        e.execute(q::RECORD_GRANT_REVOCATION, args![seq, grant_id, now])
            .await?;
    }
    Ok(changed > 0)
}

// ----- revocation feed -----

/// Resource servers accept a token a little past `exp`: a token that expired less
/// than this long ago may still be in use.
fn still_accepted_after(now: i64) -> i64 {
    now - i64::try_from(crate::domain::tokens::RESOURCE_SERVER_LEEWAY_SECS).unwrap_or(0)
}

/// Records the revocation of access token `jti` in the feed.
async fn record_token_revocation(
    e: &mut impl InTransaction,
    jti: &str,
    now: i64,
) -> StoreResult<()> {
    let seq: i64 = fetch_one(e, q::NEXT_REVOCATION_SEQ, args![]).await?;
    e.execute(q::RECORD_TOKEN_REVOCATION, args![seq, now, jti])
        .await?;
    Ok(())
}

/// Three reads, in one (read) transaction for a consistent page.
pub(crate) async fn revocations_after(
    e: &mut impl InTransaction,
    after: i64,
    limit: i64,
) -> StoreResult<RevocationPage> {
    let head: i64 = fetch_one(e, q::REVOCATION_HEAD, args![]).await?;
    let oldest: i64 = fetch_one(e, q::OLDEST_REVOCATION, args![]).await?;
    let entries = e
        .fetch_all(q::REVOCATIONS_AFTER, args![after, limit.max(1)])
        .await?;
    Ok(RevocationPage {
        head,
        oldest,
        entries,
    })
}

// ----- tokens -----

pub(crate) async fn insert_access_token(
    e: &mut impl Exec,
    a: &AccessTokenRecord,
) -> StoreResult<()> {
    e.execute(
        q::INSERT_ACCESS_TOKEN,
        args![
            &a.jti,
            &a.grant_id,
            &a.client_id,
            &a.user_id,
            &a.scope,
            &a.audience,
            a.issued_at,
            a.expires_at,
        ],
    )
    .await?;
    Ok(())
}

/// Locks the grant `issued` belongs to, if it is live; false if it is revoked
/// (or gone). A revocation running meanwhile finishes first.
async fn lock_live_grant(e: &mut impl InTransaction, issued: &Issued) -> StoreResult<bool> {
    let grant_id = issued
        .access
        .grant_id
        .as_deref()
        .ok_or_else(|| StoreError::Failed("tokens for a grant without its id".into()))?;
    Ok(
        fetch_locked::<String>(e, &q::LOCK_LIVE_GRANT, args![grant_id])
            .await?
            .is_some(),
    )
}

/// Stores tokens for an existing grant while it is live; false (nothing stored)
/// if it is revoked.
pub(crate) async fn add_tokens(e: &mut impl InTransaction, issued: &Issued) -> StoreResult<bool> {
    if !lock_live_grant(e, issued).await? {
        return Ok(false);
    }
    insert_tokens(e, issued, None).await?;
    Ok(true)
}

/// Stores the tokens of one token-endpoint call; a refresh
/// token keeps its grant alive at least as long as itself.
///
/// `known_grant_expiry`: the grant's expiry when the caller wrote the grant in this
/// same transaction; the extension is then skipped when it already covers the
/// refresh token (a new grant is written with its refresh token's expiry), which
/// saves a statement and a round trip on every code exchange.
async fn insert_tokens(
    e: &mut impl InTransaction,
    issued: &Issued,
    known_grant_expiry: Option<i64>,
) -> StoreResult<()> {
    insert_access_token(e, &issued.access).await?;
    if let Some(r) = &issued.refresh {
        e.execute(
            q::INSERT_REFRESH_TOKEN,
            args![
                &r.token_hash,
                &r.grant_id,
                &r.scope,
                r.created_at,
                r.expires_at
            ],
        )
        .await?;
        if known_grant_expiry.is_none_or(|grant_expiry| grant_expiry < r.expires_at) {
            e.execute(q::EXTEND_GRANT, args![r.expires_at, &r.grant_id])
                .await?;
        }
    }
    Ok(())
}

pub(crate) async fn find_refresh(
    e: &mut impl Exec,
    token_hash: &str,
) -> StoreResult<Option<RefreshRecord>> {
    e.fetch_optional(q::REFRESH_TOKEN_BY_HASH, args![token_hash])
        .await
}

/// Marks `old_hash` rotated, only if it was not yet, and stores
/// the new tokens. `Ok(false)`: another request rotated it first, or the grant is
/// revoked; nothing written. The conditional update is the single-use check: of
/// concurrent rotations (on any replica) one changes the row, the others wait for
/// it and then change nothing.
pub(crate) async fn rotate_refresh(
    e: &mut impl InTransaction,
    old_hash: &str,
    now: i64,
    issued: &Issued,
) -> StoreResult<bool> {
    if !lock_live_grant(e, issued).await? {
        return Ok(false);
    }
    if e.execute(q::ROTATE_REFRESH_TOKEN, args![now, old_hash])
        .await?
        != 1
    {
        return Ok(false);
    }
    insert_tokens(e, issued, None).await?;
    Ok(true)
}

pub(crate) async fn find_access_token(
    e: &mut impl Exec,
    jti: &str,
) -> StoreResult<Option<AccessTokenRecord>> {
    e.fetch_optional(q::ACCESS_TOKEN_BY_JTI, args![jti]).await
}

/// Revokes one access token and records it in the feed.
pub(crate) async fn revoke_access_token(
    e: &mut impl InTransaction,
    jti: &str,
    now: i64,
) -> StoreResult<bool> {
    if e.execute(q::REVOKE_ACCESS_TOKEN, args![now, jti]).await? == 0 {
        return Ok(false);
    }
    record_token_revocation(e, jti, now).await?;
    Ok(true)
}

// ----- admin views -----

/// Two queries, in one (read) transaction for a consistent view.
pub(crate) async fn active_grants(
    e: &mut impl InTransaction,
    now: i64,
) -> StoreResult<Vec<GrantSummary>> {
    let mut grants: Vec<GrantSummary> = e.fetch_all(q::ACTIVE_GRANTS, args![now]).await?;
    let tokens: Vec<(String, String)> = e.fetch_all(q::ACTIVE_GRANT_TOKENS, args![now]).await?;
    let mut by_grant: HashMap<String, Vec<String>> = HashMap::new();
    for (jti, grant_id) in tokens {
        by_grant.entry(grant_id).or_default().push(jti);
    }
    for summary in &mut grants {
        summary.token_ids = by_grant.remove(&summary.grant.id).unwrap_or_default();
    }
    Ok(grants)
}

pub(crate) async fn user_stats(e: &mut impl Exec, now: i64) -> StoreResult<Vec<UserStat>> {
    e.fetch_all(q::USER_STATS, args![now]).await
}

// ----- audit, settings, maintenance -----

pub(crate) async fn insert_audit(e: &mut impl Exec, a: &AuditRecord) -> StoreResult<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    e.execute(
        q::INSERT_AUDIT,
        args![
            id.as_str(),
            a.at_ms,
            &a.event,
            &a.username,
            &a.client_id,
            &a.ip,
            &a.detail,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn list_audit(e: &mut impl Exec, limit: i64) -> StoreResult<Vec<AuditRecord>> {
    e.fetch_all(q::LIST_AUDIT, args![limit.clamp(1, 10_000)])
        .await
}

pub(crate) async fn ping(e: &mut impl Exec) -> StoreResult<()> {
    e.fetch_optional::<()>(q::PING, args![]).await?;
    Ok(())
}

/// The value of `key`, stored as `init` first if it has none.
pub(crate) async fn get_or_init_kv(
    e: &mut impl InTransaction,
    key: &str,
    init: &str,
) -> StoreResult<String> {
    e.execute(q::INIT_KV, args![key, init]).await?;
    fetch_one(e, q::KV, args![key]).await
}

pub(crate) async fn find_kv(e: &mut impl Exec, key: &str) -> StoreResult<Option<String>> {
    e.fetch_optional(q::KV, args![key]).await
}

/// All replacements or (when a row no longer holds the value that was read) none.
pub(crate) async fn replace_secrets(
    e: &mut impl InTransaction,
    updates: &[SecretUpdate],
) -> StoreResult<()> {
    for u in updates {
        let (sql, id) = match &u.slot {
            SecretSlot::SigningKey(kid) => (q::RESEAL_KEY, kid),
            SecretSlot::Setting(key) => (q::RESEAL_KV, key),
        };
        let changed = e.execute(sql, args![&u.replacement, id, &u.stored]).await?;
        if changed != 1 {
            return Err(StoreError::Failed(format!(
                "{} changed while it was being re-encrypted; nothing was written",
                u.slot
            )));
        }
    }
    Ok(())
}

/// Deletes expired codes, sessions, tokens and feed entries; returns rows removed.
pub(crate) async fn purge_expired(e: &mut impl InTransaction, now: i64) -> StoreResult<u64> {
    // Codes (and access tokens) are kept an hour past expiry, so that a late
    // replay of a code is still detected; feed entries as long, far beyond any
    // resource server's clock-skew leeway.
    let late = now - 3600;
    Ok(e.execute(q::PURGE_CODES, args![late]).await?
        + e.execute(q::PURGE_SESSIONS, args![now]).await?
        + e.execute(q::PURGE_ACCESS_TOKENS, args![late]).await?
        + e.execute(q::PURGE_REFRESH_TOKENS, args![now]).await?
        + e.execute(q::PURGE_REVOCATIONS, args![late]).await?
        + e.execute(q::PURGE_UPSTREAM_LOGINS, args![now]).await?)
}
