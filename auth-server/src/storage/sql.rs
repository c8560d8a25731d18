//! The `Store` implementation on sqlx's `Any` driver, for PostgreSQL and for the
//! SQLite URLs the rusqlite store does not take (in-memory databases). On SQLite
//! it uses WAL and `BEGIN IMMEDIATE` for write transactions, so that concurrent
//! writers queue on the busy timeout instead of failing. The statements and
//! operations are the shared ones (`queries`, `ops`); this file only chooses the
//! pool and the transaction for each.
//!
//! On PostgreSQL several replicas share the database. Transactions run at its
//! default isolation, READ COMMITTED; the operations that need more lock the rows
//! they check (`SELECT ... FOR UPDATE`, see `ops.rs`), so nothing is retried.
//! Migrations run under the migrator's advisory lock, one process at a time.

use std::borrow::Cow;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::query::Query;
use sqlx::{AnyConnection, AnyPool, Connection, Row, SqlSafeStr, Transaction};

use super::exec::{Arg, Column, Exec, Fields, FromRow, InTransaction};
use super::*;

pub struct SqlStore {
    /// Reads (several connections; WAL readers never block the writer).
    read: AnyPool,
    /// Writes. For SQLite a single connection, so that writers queue in the pool
    /// instead of spinning on SQLITE_BUSY; for PostgreSQL the same pool as `read`.
    write: AnyPool,
    sqlite: bool,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        queries::MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

fn pool_options(sqlite: bool, max_connections: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(std::time::Duration::from_secs(10));
    if !sqlite {
        // No ping before each use: it would be one more round trip in every store
        // call. sqlx pings on release, off the request path, and drops a broken
        // connection then; one that breaks while idle fails its next statement.
        return options.test_before_acquire(false);
    }
    options.after_connect(|conn, _meta| {
        Box::pin(async move {
            sqlx::query(queries::SYNCHRONOUS_NORMAL)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    })
}

impl SqlStore {
    /// Connects (creating the SQLite file and its directory), enables WAL and runs
    /// the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or("");
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Corrupt(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
            }
        }
        let write = pool_options(sqlite, if sqlite { 1 } else { max_connections })
            .connect(url)
            .await?;
        if sqlite {
            sqlx::query(queries::ENABLE_WAL).execute(&write).await?;
            migrator().run(&write).await?;
        } else {
            migrate_postgres(url).await?;
        }
        let read = if sqlite {
            pool_options(sqlite, max_connections).connect(url).await?
        } else {
            write.clone()
        };
        Ok(SqlStore {
            read,
            write,
            sqlite,
        })
    }

    async fn begin(&self) -> StoreResult<SqlxTx> {
        let tx = if self.sqlite {
            self.write.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.write.begin().await?
        };
        Ok(SqlxTx {
            tx,
            row_locks: !self.sqlite,
        })
    }

    /// A transaction for reads that must agree with each other: one snapshot. A
    /// SQLite read transaction is one; on PostgreSQL READ COMMITTED would give each
    /// statement its own, so it is REPEATABLE READ (read only: it never conflicts).
    async fn begin_read(&self) -> StoreResult<SqlxTx> {
        let tx = if self.sqlite {
            self.read.begin().await?
        } else {
            self.read
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?
        };
        Ok(SqlxTx {
            tx,
            row_locks: !self.sqlite,
        })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// sqlx runs the shared statements on a connection or transaction.
impl Exec for AnyConnection {
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sql, args).execute(self).await?.rows_affected())
    }

    async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        bind(sql, args)
            .fetch_optional(self)
            .await?
            .as_ref()
            .map(T::from_row)
            .transpose()
    }

    async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        bind(sql, args)
            .fetch_all(self)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }
}

/// Applies the migrations on PostgreSQL, one process at a time: sqlx's migrator
/// takes a session-level advisory lock (`pg_advisory_lock`, keyed by the database
/// name) before it even creates its ledger, so replicas starting together queue
/// there; the first applies what is missing, the others then find it applied.
/// On a connection of its own, closed after: a run that fails half-way returns
/// without unlocking, and a pooled connection would go on holding the lock.
async fn migrate_postgres(url: &str) -> StoreResult<()> {
    let mut conn = AnyConnection::connect(url).await?;
    let applied = migrator().run(&mut conn).await;
    if let Err(e) = conn.close().await {
        log::warn!("closing the migration connection: {e}");
    }
    Ok(applied?)
}

/// A sqlx transaction running the shared statements: the only [`Exec`] here that
/// operations of several statements accept ([`InTransaction`]).
pub(crate) struct SqlxTx {
    tx: Transaction<'static, sqlx::Any>,
    /// PostgreSQL: locking reads add `FOR UPDATE`.
    row_locks: bool,
}

impl SqlxTx {
    async fn commit(self) -> StoreResult<()> {
        Ok(self.tx.commit().await?)
    }
}

impl Exec for SqlxTx {
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Exec::execute(&mut *self.tx, sql, args).await
    }

    async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        Exec::fetch_optional(&mut *self.tx, sql, args).await
    }

    async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        Exec::fetch_all(&mut *self.tx, sql, args).await
    }
}

impl InTransaction for SqlxTx {
    fn row_locks(&self) -> bool {
        self.row_locks
    }
}

fn bind(sql: &'static str, args: &[Arg<'_>]) -> Query<'static, sqlx::Any, AnyArguments> {
    args.iter().fold(sqlx::query(sql), |query, arg| match *arg {
        Arg::Text(v) => query.bind(v),
        Arg::NullableText(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
    })
}

impl Fields for AnyRow {
    fn get<T: Column>(&self, index: usize) -> StoreResult<T> {
        Ok(self.try_get(index)?)
    }

    fn with_text<T>(&self, index: usize, f: impl FnOnce(&str) -> StoreResult<T>) -> StoreResult<T> {
        f(self.try_get::<&str, _>(index)?)
    }
}

/// Runs `$op` in a write transaction and commits it.
macro_rules! in_transaction {
    ($store:expr, $op:ident($($arg:expr),*)) => {{
        let mut tx = $store.begin().await?;
        let out = ops::$op(&mut tx, $($arg),*).await?;
        tx.commit().await?;
        Ok(out)
    }};
}

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        ops::create_user(&mut *self.write.acquire().await?, u).await
    }

    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        ops::find_user_by_name(&mut *self.read.acquire().await?, username).await
    }

    async fn find_user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        ops::find_user_by_id(&mut *self.read.acquire().await?, id).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        ops::list_users(&mut *self.read.acquire().await?).await
    }

    async fn set_password(&self, username: &str, hash: &str, now: i64) -> StoreResult<bool> {
        ops::set_password(&mut *self.write.acquire().await?, username, hash, now).await
    }

    async fn set_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<bool> {
        in_transaction!(self, set_disabled(username, disabled, now))
    }

    async fn find_user_by_identity(
        &self,
        idp: &str,
        subject: &str,
    ) -> StoreResult<Option<UserRecord>> {
        ops::find_user_by_identity(&mut *self.read.acquire().await?, idp, subject).await
    }

    async fn save_federated_user(&self, u: &UserRecord) -> StoreResult<UserRecord> {
        in_transaction!(self, save_federated_user(u))
    }

    async fn insert_upstream_login(&self, l: &UpstreamLoginRecord) -> StoreResult<()> {
        ops::insert_upstream_login(&mut *self.write.acquire().await?, l).await
    }

    async fn take_upstream_login(
        &self,
        state_hash: &str,
    ) -> StoreResult<Option<UpstreamLoginRecord>> {
        ops::take_upstream_login(&mut *self.write.acquire().await?, state_hash).await
    }

    async fn upsert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        ops::upsert_client(&mut *self.write.acquire().await?, c).await
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        ops::insert_client(&mut *self.write.acquire().await?, c).await
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        ops::find_client(&mut *self.read.acquire().await?, client_id).await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        ops::list_clients(&mut *self.read.acquire().await?).await
    }

    async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &ClientMetadata,
        now: i64,
    ) -> StoreResult<bool> {
        ops::update_client_metadata(&mut *self.write.acquire().await?, client_id, metadata, now)
            .await
    }

    async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        in_transaction!(self, delete_client(client_id, now))
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        ops::list_keys(&mut *self.read.acquire().await?).await
    }

    async fn rotate_keys(&self, k: &StoredKey, now: i64) -> StoreResult<()> {
        in_transaction!(self, rotate_keys(k, now))
    }

    async fn insert_first_key(&self, k: &StoredKey) -> StoreResult<bool> {
        in_transaction!(self, insert_first_key(k))
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        ops::create_session(&mut *self.write.acquire().await?, s).await
    }

    async fn find_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<SessionRecord>> {
        ops::find_session(&mut *self.read.acquire().await?, id_hash, now).await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        ops::delete_session(&mut *self.write.acquire().await?, id_hash).await
    }

    async fn find_consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        ops::find_consent(&mut *self.read.acquire().await?, user_id, client_id).await
    }

    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        ops::save_consent(
            &mut *self.write.acquire().await?,
            user_id,
            client_id,
            scope,
            now,
        )
        .await
    }

    async fn insert_code(&self, c: &AuthCodeRecord) -> StoreResult<()> {
        ops::insert_code(&mut *self.write.acquire().await?, c).await
    }

    /// The claim runs alone (autocommit): one round trip in the common case
    /// instead of three (`BEGIN`, claim, `COMMIT`); only a code that cannot be
    /// claimed opens a transaction to inspect it.
    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
        let claimed = ops::claim_code(&mut *self.write.acquire().await?, code_hash, now).await?;
        match claimed {
            Some(record) => Ok(CodeRedemption::Fresh(record)),
            None => in_transaction!(self, inspect_unclaimable_code(code_hash)),
        }
    }

    async fn create_grant(
        &self,
        g: &GrantRecord,
        issued: &Issued,
        code_hash: Option<&str>,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if !ops::create_grant(&mut tx, g, issued, code_hash, audit).await? {
            return Err(ops::grant_refused());
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        ops::find_grant(&mut *self.read.acquire().await?, grant_id).await
    }

    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        ops::find_refresh(&mut *self.read.acquire().await?, token_hash).await
    }

    async fn rotate_refresh(&self, old_hash: &str, now: i64, issued: &Issued) -> StoreResult<bool> {
        in_transaction!(self, rotate_refresh(old_hash, now, issued))
    }

    async fn add_tokens(&self, issued: &Issued) -> StoreResult<bool> {
        in_transaction!(self, add_tokens(issued))
    }

    async fn insert_access_token(&self, a: &AccessTokenRecord) -> StoreResult<()> {
        ops::insert_access_token(&mut *self.write.acquire().await?, a).await
    }

    async fn find_access_token(&self, jti: &str) -> StoreResult<Option<AccessTokenRecord>> {
        ops::find_access_token(&mut *self.read.acquire().await?, jti).await
    }

    async fn revoke_access_token(&self, jti: &str, now: i64) -> StoreResult<bool> {
        in_transaction!(self, revoke_access_token(jti, now))
    }

    async fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
        forget_consent: bool,
    ) -> StoreResult<bool> {
        in_transaction!(self, revoke_grant(grant_id, now, forget_consent))
    }

    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<RevocationPage> {
        let mut tx = self.begin_read().await?;
        let page = ops::revocations_after(&mut tx, after, limit).await?;
        tx.commit().await?;
        Ok(page)
    }

    async fn active_grants(&self, now: i64) -> StoreResult<Vec<GrantSummary>> {
        let mut tx = self.begin_read().await?;
        let grants = ops::active_grants(&mut tx, now).await?;
        tx.commit().await?;
        Ok(grants)
    }

    async fn user_stats(&self, now: i64) -> StoreResult<Vec<UserStat>> {
        ops::user_stats(&mut *self.read.acquire().await?, now).await
    }

    async fn audit(&self, a: &AuditRecord) -> StoreResult<()> {
        ops::insert_audit(&mut *self.write.acquire().await?, a).await
    }

    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        ops::list_audit(&mut *self.read.acquire().await?, limit).await
    }

    async fn ping(&self) -> StoreResult<()> {
        ops::ping(&mut *self.read.acquire().await?).await
    }

    async fn get_or_init_kv(&self, k: &str, init: &str) -> StoreResult<String> {
        in_transaction!(self, get_or_init_kv(k, init))
    }

    async fn find_kv(&self, k: &str) -> StoreResult<Option<String>> {
        ops::find_kv(&mut *self.read.acquire().await?, k).await
    }

    async fn replace_secrets(&self, updates: &[SecretUpdate]) -> StoreResult<()> {
        in_transaction!(self, replace_secrets(updates))
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        in_transaction!(self, purge_expired(now))
    }
}
