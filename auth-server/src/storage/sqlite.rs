//! The `Store` implementation for SQLite on `rusqlite`, used for `sqlite:` URLs.
//!
//! # Why statements run inline on the calling (actix worker) thread
//!
//! sqlx's SQLite driver runs every connection on its own worker thread, so each
//! statement (BEGIN and COMMIT included) is a hand-off to another thread and back;
//! a token exchange made ~13 of them and the context switches dominated its CPU
//! time. Here the statements run synchronously inside the (otherwise
//! `await`-free) store methods. With WAL and `synchronous=NORMAL` a commit only
//! appends to the WAL (no fsync), so a call is microseconds: cheaper than any
//! hand-off. The price is that a request worker blocks while SQLite works, and up
//! to `busy_timeout` when another process (the CLI) holds the write lock; both are
//! rare and short for this workload. No lock is ever held across an `.await` (the
//! only awaits, in the group commit below, hold none).
//!
//! The statements, row mappers and operations are the ones the sqlx store runs
//! (`queries`, `rows`, `ops`). They are `async` for sqlx's sake; this driver
//! never suspends, so `run` completes each in a single poll, inline.
//!
//! # Connections
//!
//! - One write connection behind a mutex: writers queue on the mutex instead of
//!   spinning on `SQLITE_BUSY`; every multi-row change is one `BEGIN IMMEDIATE`
//!   transaction (a `busy_timeout` covers other processes).
//! - A few read connections (`query_only`), each behind its own mutex, picked
//!   without blocking when one is free. WAL readers never block the writer.
//! - Statements are prepared once per connection (`prepare_cached`).
//! - Reads use the write connection when it is idle: every commit by another
//!   connection invalidates a connection's page cache, so the writer's cache is
//!   the warm one. Reads never wait behind a write; they take a reader then.
//!
//! # Group commit of the token endpoint's writes
//!
//! `redeem_code` and `create_grant` (the two write transactions of a code
//! exchange) are queued; the first job of an empty queue yields once so that the
//! other requests its worker is already processing can queue theirs, then
//! commits the whole queue in one `BEGIN IMMEDIATE` transaction. A refused job (a
//! replayed code) writes nothing and does not affect the others; if the batch
//! fails (busy, disk full, one job's constraint error) it is rolled back and
//! every job is run again in its own transaction, so an error reaches only the
//! caller whose write caused it. Callers get their result only after the
//! commit, so the semantics are those of one transaction per call: a code is
//! marked used before anything is minted for it, and a grant, its tokens, the
//! code link and the audit row are stored together or not at all. The pages N exchanges share
//! (table and index tails) and the commit record are written once instead of N
//! times, which is most of the WAL traffic. If the leading request is cancelled
//! while it yields, its drop guard still commits the batch; a queued job whose
//! own caller went away is committed too (unlike an abandoned sqlx transaction):
//! a redeemed code stays used and a grant stays stored, which a retrying client
//! sees as `invalid_grant`, the same outcome as a lost response.
//!
//! # Schema and migrations
//!
//! The schema is the same migration SQL the sqlx store runs
//! (`migrations/0001_init.sql`), and the ledger is sqlx's own `_sqlx_migrations`
//! table with the same columns and checksum (SHA-384 of the SQL). So a database
//! created by the sqlx store opens here without re-running anything, a database
//! created here opens with the sqlx store (`SqlStore`) too, and a changed or
//! half-applied migration is refused exactly as sqlx refuses it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use futures_util::FutureExt;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, Row, ToSql, TransactionBehavior};

use tokio::sync::oneshot;

use super::exec::{Arg, Column, Exec, Fields, FromRow, InTransaction};
use super::*;

/// sqlx's migration ledger (shared with [`super::sql::SqlStore`]).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on read connections, whatever the configured pool size.
const MAX_READERS: u32 = 8;
/// How often the background thread checkpoints the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Backstop: the write connection checkpoints by itself (on a request thread)
/// only if the WAL grows past this many pages (~64 MiB), i.e. when the
/// background checkpoints cannot keep up.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16 * 1024;

pub struct SqliteStore {
    /// Hot-path writes waiting for the next group commit.
    queue: Mutex<Vec<Job>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    writer: Mutex<Connection>,
    /// Dropping it stops the checkpoint thread.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

/// Where a `sqlite:` URL points, or `None` for an in-memory database (which
/// cannot be shared between connections; those stay on the sqlx store).
pub fn file_url(url: &str) -> Option<(PathBuf, bool)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    // Percent-encoded paths: sqlx decodes them, so they stay with the sqlx store
    // rather than opening (or creating) a file under the encoded name.
    if path.is_empty() || path == ":memory:" || path.starts_with("file:") || path.contains('%') {
        return None;
    }
    // As sqlx: without `mode=rwc` a missing database is an error, not a new empty
    // one (which would get a fresh signing key and no users).
    let mut create = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("mode", "rwc")) => create = true,
            Some(("mode", "rw")) => create = false,
            // `mode=ro`, `mode=memory` and options we do not know: not ours.
            _ => return None,
        }
    }
    Some((PathBuf::from(path), create))
}

fn open_connection(path: &Path, create: bool, reader: bool) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(queries::SYNCHRONOUS_NORMAL)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Statement journals and temporary b-trees in memory, never in temp files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if reader {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    let guard = match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    reset(guard)
}

/// A connection whose previous user panicked mid-transaction is rolled back
/// before anyone else uses it.
fn reset(guard: MutexGuard<'_, Connection>) -> MutexGuard<'_, Connection> {
    if !guard.is_autocommit() {
        if let Err(e) = guard.execute_batch("ROLLBACK") {
            log::warn!("rolling back an abandoned transaction failed: {e}");
        }
    }
    guard
}

fn checksum(sql: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, sql.as_bytes())
        .as_ref()
        .to_vec()
}

/// Applies the embedded migrations that the ledger does not list yet, each in
/// its own `BEGIN IMMEDIATE` transaction together with its ledger row.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        );"
    ))?;
    for &(version, description, sql) in queries::MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: Option<(bool, Vec<u8>)> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT success, checksum FROM {MIGRATIONS_TABLE} WHERE version = ?1"
            ))?;
            let mut rows = stmt.query(params![version])?;
            match rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            }
        };
        match applied {
            Some((false, _)) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {version} is partially applied (dirty); fix the database by hand"
                )))
            }
            Some((true, sum)) if sum != checksum(sql) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {version} was applied but differs from the embedded one"
                )))
            }
            Some(_) => continue,
            None => {}
        }
        let started = std::time::Instant::now();
        tx.execute_batch(sql)?;
        tx.execute(
            &format!(
                "INSERT INTO {MIGRATIONS_TABLE} (version, description, success, checksum, execution_time) \
                 VALUES (?1, ?2, TRUE, ?3, ?4)"
            ),
            params![
                version,
                description,
                checksum(sql),
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating the file and its directory unless `mode=rw`), enables WAL
    /// and applies the migrations.
    pub fn open(path: &Path, create: bool, max_connections: u32) -> StoreResult<SqliteStore> {
        if create {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Corrupt(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
            }
        }
        let mut writer = open_connection(path, create, false)?;
        let mode: String = writer.query_row(queries::ENABLE_WAL, [], |r| r.get(0))?;
        let wal = mode.eq_ignore_ascii_case("wal");
        if !wal {
            log::warn!("SQLite did not switch to WAL (journal_mode={mode})");
        }
        migrate(&mut writer)?;
        let readers = (0..max_connections.clamp(1, MAX_READERS))
            .map(|_| open_connection(path, false, true).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let checkpointer = if wal {
            let sender = spawn_checkpointer(open_connection(path, false, false)?)?;
            writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
            Some(sender)
        } else {
            None
        };
        Ok(SqliteStore {
            queue: Mutex::new(Vec::new()),
            readers,
            next_reader: AtomicUsize::new(0),
            writer: Mutex::new(writer),
            _checkpointer: checkpointer,
        })
    }

    /// Runs `f` (reads only) on the write connection when it is idle — its page
    /// cache is the warm one, since other connections' caches are invalidated by
    /// every commit — else on a free read connection, waiting for one only if
    /// all are busy. Never waits behind a write in progress.
    fn read<T>(&self, f: impl FnOnce(&mut Rusqlite<'_>) -> StoreResult<T>) -> StoreResult<T> {
        match self.writer.try_lock() {
            Ok(g) => return f(&mut Rusqlite(&reset(g))),
            Err(TryLockError::Poisoned(p)) => return f(&mut Rusqlite(&reset(p.into_inner()))),
            Err(TryLockError::WouldBlock) => {}
        }
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n.max(1);
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(g) => return f(&mut Rusqlite(&reset(g))),
                Err(TryLockError::Poisoned(p)) => return f(&mut Rusqlite(&reset(p.into_inner()))),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        match self.readers.get(start) {
            Some(m) => f(&mut Rusqlite(&lock(m))),
            None => f(&mut Rusqlite(&lock(&self.writer))),
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the write connection:
    /// committed when `f` succeeds, rolled back when it fails.
    fn write<T>(&self, f: impl FnOnce(&mut RusqliteTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut RusqliteTx(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` (a single statement) on the write connection, outside a transaction.
    fn write_one<T>(&self, f: impl FnOnce(&mut Rusqlite<'_>) -> StoreResult<T>) -> StoreResult<T> {
        f(&mut Rusqlite(&lock(&self.writer)))
    }
}

/// A thread with its own connection that copies the WAL into the database every
/// [`CHECKPOINT_EVERY`] (PASSIVE: it never blocks readers or the writer), so that
/// the checkpoint's I/O and fsync do not stall a request. It stops when the
/// returned sender is dropped (with the store).
fn spawn_checkpointer(conn: Connection) -> StoreResult<std::sync::mpsc::Sender<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    log::warn!("WAL checkpoint failed: {e}");
                }
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(tx)
}

/// rusqlite runs the shared statements, each prepared once per connection.
pub(crate) struct Rusqlite<'c>(&'c Connection);

/// A rusqlite transaction running the shared statements: the only [`Exec`] here
/// that operations of several statements accept ([`InTransaction`]).
pub(crate) struct RusqliteTx<'c>(&'c rusqlite::Transaction<'c>);

/// Runs a store operation on a rusqlite connection to completion. [`Rusqlite`]
/// never suspends, so one poll on the calling thread finishes it, as long as the
/// operation awaits nothing else (the rule stated in `ops.rs`).
fn run<T>(op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let out = op.now_or_never();
    debug_assert!(
        out.is_some(),
        "a store operation awaited something other than an Exec method (see ops.rs)"
    );
    out.unwrap_or_else(|| Err(StoreError::Failed("a SQLite operation suspended".into())))
}

impl Exec for Rusqlite<'_> {
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let changed = self
            .0
            .prepare_cached(sql)?
            .execute(params_from_iter(args))?;
        Ok(changed as u64)
    }

    async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        rows.next()?.map(|row| T::from_row(row)).transpose()
    }

    async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(T::from_row(row)?);
        }
        Ok(out)
    }
}

impl Exec for RusqliteTx<'_> {
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Rusqlite(self.0).execute(sql, args).await
    }

    async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>> {
        Rusqlite(self.0).fetch_optional(sql, args).await
    }

    async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        Rusqlite(self.0).fetch_all(sql, args).await
    }
}

/// Every write transaction here is `BEGIN IMMEDIATE`: it holds the database's
/// write lock, no row lock is needed.
impl InTransaction for RusqliteTx<'_> {
    fn row_locks(&self) -> bool {
        false
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Text(v) | Arg::NullableText(Some(v)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes()))
            }
            Arg::NullableText(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
        })
    }
}

impl Fields for Row<'_> {
    fn get<T: Column>(&self, index: usize) -> StoreResult<T> {
        Ok(Row::get::<usize, T>(self, index)?)
    }

    fn with_text<T>(&self, index: usize, f: impl FnOnce(&str) -> StoreResult<T>) -> StoreResult<T> {
        let text = self
            .get_ref(index)?
            .as_str()
            .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))?;
        f(text)
    }
}

// ----- group commit -----

/// A write of the token endpoint's hot path, queued for the next group commit.
enum Job {
    Redeem {
        code_hash: String,
        now: i64,
        done: oneshot::Sender<StoreResult<CodeRedemption>>,
    },
    Grant {
        grant: Box<GrantRecord>,
        issued: Box<Issued>,
        code_hash: Option<String>,
        audit: Option<Box<AuditRecord>>,
        done: oneshot::Sender<StoreResult<()>>,
    },
}

/// What a job produced inside a transaction (sent to its caller only after the
/// commit).
enum Outcome {
    Redeemed(Box<CodeRedemption>),
    /// `false`: the grant was refused (its code was replayed) and nothing was written.
    Granted(bool),
}

impl Job {
    /// Runs the job inside the current transaction. A refused grant (a replayed code)
    /// writes nothing and is an `Ok` outcome; a database error is returned and leaves
    /// the transaction to be rolled back by the caller.
    fn execute(&self, c: &mut RusqliteTx<'_>) -> StoreResult<Outcome> {
        match self {
            Job::Redeem { code_hash, now, .. } => {
                run(ops::redeem_code(c, code_hash, *now)).map(|r| Outcome::Redeemed(Box::new(r)))
            }
            Job::Grant {
                grant,
                issued,
                code_hash,
                audit,
                ..
            } => run(ops::create_grant(
                c,
                grant,
                issued,
                code_hash.as_deref(),
                audit.as_deref(),
            ))
            .map(Outcome::Granted),
        }
    }

    /// Sends the caller its result. A caller that went away (client disconnected)
    /// simply gets no answer.
    fn answer(self, result: StoreResult<Outcome>) {
        match self {
            Job::Redeem { done, .. } => {
                let _ = done.send(match result {
                    Ok(Outcome::Redeemed(r)) => Ok(*r),
                    Ok(Outcome::Granted(_)) => Err(mismatched()),
                    Err(e) => Err(e),
                });
            }
            Job::Grant { done, .. } => {
                let _ = done.send(match result {
                    Ok(Outcome::Granted(true)) => Ok(()),
                    Ok(Outcome::Granted(false)) => Err(ops::grant_refused()),
                    Ok(Outcome::Redeemed(_)) => Err(mismatched()),
                    Err(e) => Err(e),
                });
            }
        }
    }
}

fn abandoned() -> StoreError {
    StoreError::Failed("the batched write was abandoned".into())
}

fn mismatched() -> StoreError {
    StoreError::Failed("a batched write produced the wrong kind of result".into())
}

/// Runs the queued jobs if dropped armed: a leader whose request is cancelled
/// while it yields still commits the batch its followers wait for.
struct FlushGuard<'a>(&'a SqliteStore);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.flush();
    }
}

impl SqliteStore {
    /// Queues `job` for a group commit. The first job of an empty queue leads:
    /// it yields once, so that the other requests this worker is already
    /// processing can queue theirs, then commits the whole queue in one
    /// transaction. Committing N exchanges at once writes the pages they share
    /// (table and index tails) and the commit record once instead of N times.
    async fn batched(&self, job: Job) {
        let leader = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(job);
            queue.len() == 1
        };
        if leader {
            let guard = FlushGuard(self);
            tokio::task::yield_now().await;
            drop(guard);
        }
    }

    /// Commits every queued job in one `BEGIN IMMEDIATE` transaction and answers
    /// each caller. If the batch fails (a busy or full disk, one job's constraint
    /// error), nothing of it was written: every job is then run again in its own
    /// transaction, so one job's error is its caller's alone and the other
    /// exchanges of the batch are not lost (a code claimed in an earlier batch
    /// would otherwise be burnt by a neighbour's failure).
    fn flush(&self) {
        let jobs = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        if jobs.is_empty() {
            return;
        }
        let batch = self.write(|c| {
            jobs.iter()
                .map(|job| job.execute(c))
                .collect::<StoreResult<Vec<Outcome>>>()
        });
        match batch {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    job.answer(Ok(outcome));
                }
            }
            Err(e) => {
                log::warn!(
                    "group commit of {} writes failed ({e}); retrying them one by one",
                    jobs.len()
                );
                for job in jobs {
                    let result = self.write(|c| job.execute(c));
                    job.answer(result);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::create_user(c, u)))
    }

    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|c| run(ops::find_user_by_name(c, username)))
    }

    async fn find_user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|c| run(ops::find_user_by_id(c, id)))
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|c| run(ops::list_users(c)))
    }

    async fn set_password(&self, username: &str, hash: &str, now: i64) -> StoreResult<bool> {
        self.write_one(|c| run(ops::set_password(c, username, hash, now)))
    }

    async fn set_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<bool> {
        self.write(|c| run(ops::set_disabled(c, username, disabled, now)))
    }

    async fn find_user_by_identity(
        &self,
        idp: &str,
        subject: &str,
    ) -> StoreResult<Option<UserRecord>> {
        self.read(|c| run(ops::find_user_by_identity(c, idp, subject)))
    }

    async fn save_federated_user(&self, u: &UserRecord) -> StoreResult<UserRecord> {
        self.write(|c| run(ops::save_federated_user(c, u)))
    }

    async fn insert_upstream_login(&self, l: &UpstreamLoginRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::insert_upstream_login(c, l)))
    }

    async fn take_upstream_login(
        &self,
        state_hash: &str,
    ) -> StoreResult<Option<UpstreamLoginRecord>> {
        self.write_one(|c| run(ops::take_upstream_login(c, state_hash)))
    }

    async fn upsert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::upsert_client(c, client)))
    }

    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::insert_client(c, client)))
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.read(|c| run(ops::find_client(c, client_id)))
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.read(|c| run(ops::list_clients(c)))
    }

    async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &ClientMetadata,
        now: i64,
    ) -> StoreResult<bool> {
        self.write_one(|c| run(ops::update_client_metadata(c, client_id, metadata, now)))
    }

    async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        self.write(|c| run(ops::delete_client(c, client_id, now)))
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(|c| run(ops::list_keys(c)))
    }

    async fn rotate_keys(&self, k: &StoredKey, now: i64) -> StoreResult<()> {
        self.write(|c| run(ops::rotate_keys(c, k, now)))
    }

    async fn insert_first_key(&self, k: &StoredKey) -> StoreResult<bool> {
        self.write(|c| run(ops::insert_first_key(c, k)))
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::create_session(c, s)))
    }

    async fn find_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<SessionRecord>> {
        self.read(|c| run(ops::find_session(c, id_hash, now)))
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.write_one(|c| run(ops::delete_session(c, id_hash)))
    }

    async fn find_consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        self.read(|c| run(ops::find_consent(c, user_id, client_id)))
    }

    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.write_one(|c| run(ops::save_consent(c, user_id, client_id, scope, now)))
    }

    async fn insert_code(&self, code: &AuthCodeRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::insert_code(c, code)))
    }

    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
        let (done, result) = oneshot::channel();
        self.batched(Job::Redeem {
            code_hash: code_hash.to_owned(),
            now,
            done,
        })
        .await;
        result.await.unwrap_or_else(|_| Err(abandoned()))
    }

    async fn create_grant(
        &self,
        g: &GrantRecord,
        issued: &Issued,
        code_hash: Option<&str>,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<()> {
        let (done, result) = oneshot::channel();
        self.batched(Job::Grant {
            grant: Box::new(g.clone()),
            issued: Box::new(issued.clone()),
            code_hash: code_hash.map(str::to_owned),
            audit: audit.map(|a| Box::new(a.clone())),
            done,
        })
        .await;
        result.await.unwrap_or_else(|_| Err(abandoned()))
    }

    async fn find_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        self.read(|c| run(ops::find_grant(c, grant_id)))
    }

    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        self.read(|c| run(ops::find_refresh(c, token_hash)))
    }

    async fn rotate_refresh(&self, old_hash: &str, now: i64, issued: &Issued) -> StoreResult<bool> {
        self.write(|c| run(ops::rotate_refresh(c, old_hash, now, issued)))
    }

    async fn add_tokens(&self, issued: &Issued) -> StoreResult<bool> {
        self.write(|c| run(ops::add_tokens(c, issued)))
    }

    async fn insert_access_token(&self, a: &AccessTokenRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::insert_access_token(c, a)))
    }

    async fn find_access_token(&self, jti: &str) -> StoreResult<Option<AccessTokenRecord>> {
        self.read(|c| run(ops::find_access_token(c, jti)))
    }

    async fn revoke_access_token(&self, jti: &str, now: i64) -> StoreResult<bool> {
        self.write(|c| run(ops::revoke_access_token(c, jti, now)))
    }

    async fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
        forget_consent: bool,
    ) -> StoreResult<bool> {
        self.write(|c| run(ops::revoke_grant(c, grant_id, now, forget_consent)))
    }

    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<RevocationPage> {
        self.read(|c| {
            // One read transaction: the head and the entries agree.
            let tx = c.0.unchecked_transaction()?;
            let page = run(ops::revocations_after(&mut RusqliteTx(&tx), after, limit))?;
            tx.finish()?;
            Ok(page)
        })
    }

    async fn active_grants(&self, now: i64) -> StoreResult<Vec<GrantSummary>> {
        self.read(|c| {
            // One read transaction: both queries see the same snapshot.
            let tx = c.0.unchecked_transaction()?;
            let grants = run(ops::active_grants(&mut RusqliteTx(&tx), now))?;
            tx.finish()?;
            Ok(grants)
        })
    }

    async fn user_stats(&self, now: i64) -> StoreResult<Vec<UserStat>> {
        self.read(|c| run(ops::user_stats(c, now)))
    }

    async fn audit(&self, a: &AuditRecord) -> StoreResult<()> {
        self.write_one(|c| run(ops::insert_audit(c, a)))
    }

    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        self.read(|c| run(ops::list_audit(c, limit)))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| run(ops::ping(c)))
    }

    async fn get_or_init_kv(&self, k: &str, init: &str) -> StoreResult<String> {
        self.write(|c| run(ops::get_or_init_kv(c, k, init)))
    }

    async fn find_kv(&self, k: &str) -> StoreResult<Option<String>> {
        self.read(|c| run(ops::find_kv(c, k)))
    }

    async fn replace_secrets(&self, updates: &[SecretUpdate]) -> StoreResult<()> {
        self.write(|c| run(ops::replace_secrets(c, updates)))
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        self.write(|c| run(ops::purge_expired(c, now)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn file_urls_are_recognised_and_memory_is_not() {
        assert_eq!(
            file_url("sqlite://data/a.db?mode=rwc"),
            Some((PathBuf::from("data/a.db"), true))
        );
        assert_eq!(
            file_url("sqlite:/tmp/x.db?mode=rw"),
            Some((PathBuf::from("/tmp/x.db"), false))
        );
        // Without `mode=rwc` a missing file is an error, as with sqlx.
        assert_eq!(
            file_url("sqlite:///abs/a.db"),
            Some((PathBuf::from("/abs/a.db"), false))
        );
        // Percent-encoded paths are decoded by sqlx: they stay with it.
        assert_eq!(file_url("sqlite://data/auth%20db.db?mode=rwc"), None);
        assert_eq!(file_url("sqlite::memory:"), None);
        assert_eq!(file_url("sqlite://x.db?mode=memory"), None);
        assert_eq!(file_url("sqlite://x.db?cache=shared"), None);
        assert_eq!(file_url("postgres://localhost/db"), None);
    }

    fn code(hash: &str) -> AuthCodeRecord {
        AuthCodeRecord {
            code_hash: hash.into(),
            client_id: "c".into(),
            user_id: "u".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            scope: "mcp:read".into(),
            resource: "http://127.0.0.1/mcp".into(),
            code_challenge: "x".into(),
            nonce: None,
            auth_time: 1,
            created_at: 1,
            expires_at: 100,
            grant_id: None,
        }
    }

    fn grant_job(id: &str, code_hash: &str) -> (Job, oneshot::Receiver<StoreResult<()>>) {
        let (done, rx) = oneshot::channel();
        let job = Job::Grant {
            grant: Box::new(GrantRecord {
                id: id.into(),
                user_id: Some("u".into()),
                client_id: "c".into(),
                scope: "mcp:read".into(),
                resource: "http://127.0.0.1/mcp".into(),
                auth_time: 1,
                created_at: 1,
                expires_at: 100,
                revoked_at: None,
            }),
            issued: Box::new(Issued {
                access: AccessTokenRecord {
                    jti: format!("jti-{id}"),
                    grant_id: Some(id.into()),
                    client_id: "c".into(),
                    user_id: Some("u".into()),
                    scope: "mcp:read".into(),
                    audience: "http://127.0.0.1/mcp".into(),
                    issued_at: 1,
                    expires_at: 100,
                    revoked_at: None,
                },
                refresh: None,
            }),
            code_hash: Some(code_hash.into()),
            audit: None,
            done,
        };
        (job, rx)
    }

    #[tokio::test]
    async fn one_group_commit_isolates_a_refused_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), true, 1).unwrap();
        store.insert_code(&code("ok")).await.unwrap();
        store.insert_code(&code("replayed")).await.unwrap();
        // A replay before any grant: the code carries the replay mark.
        store.redeem_code("replayed", 2).await.unwrap();
        store.redeem_code("replayed", 2).await.unwrap();
        let (redeem_done, redeem_rx) = oneshot::channel();
        let (good, good_rx) = grant_job("g-ok", "ok");
        let (bad, bad_rx) = grant_job("g-bad", "replayed");
        {
            let mut queue = store.queue.lock().unwrap();
            queue.push(Job::Redeem {
                code_hash: "ok".into(),
                now: 2,
                done: redeem_done,
            });
            queue.push(good);
            queue.push(bad);
        }
        store.flush();
        assert!(store.queue.lock().unwrap().is_empty());
        assert!(matches!(
            redeem_rx.await.unwrap().unwrap(),
            CodeRedemption::Fresh(_)
        ));
        good_rx.await.unwrap().unwrap();
        assert!(matches!(
            bad_rx.await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        assert!(store.find_grant("g-ok").await.unwrap().is_some());
        assert!(store.find_access_token("jti-g-ok").await.unwrap().is_some());
        assert!(store.find_grant("g-bad").await.unwrap().is_none());
        assert!(store
            .find_access_token("jti-g-bad")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_database_error_in_a_batch_reaches_only_its_own_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), true, 1).unwrap();
        for c in ["a", "b"] {
            store.insert_code(&code(c)).await.unwrap();
            assert!(matches!(
                store.redeem_code(c, 2).await.unwrap(),
                CodeRedemption::Fresh(_)
            ));
        }
        let (good, good_rx) = grant_job("g-a", "a");
        // The same access-token id as the good job: a primary-key violation.
        let (mut bad, bad_rx) = grant_job("g-b", "b");
        if let Job::Grant { issued, .. } = &mut bad {
            issued.access.jti = "jti-g-a".into();
        }
        store.queue.lock().unwrap().extend([good, bad]);
        store.flush();
        good_rx.await.unwrap().unwrap();
        assert!(bad_rx.await.unwrap().is_err());
        assert!(store.find_grant("g-a").await.unwrap().is_some());
        assert!(store.find_grant("g-b").await.unwrap().is_none());
        // The failed job left nothing behind: its code is still unlinked, so the
        // exchange can be retried by the caller that got the error.
        let b = store
            .read(|c| {
                c.0.query_row(
                    "SELECT grant_id FROM auth_codes WHERE code_hash = 'b'",
                    [],
                    |r| r.get::<_, Option<String>>(0),
                )
                .map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!(b, None);
    }

    #[test]
    fn checksum_is_sqlx_compatible() {
        // sqlx's `migrate::checksum` is SHA-384 of the SQL text.
        assert_eq!(checksum("").len(), 48);
        assert_eq!(
            checksum("abc")[..4],
            [0xcb, 0x00, 0x75, 0x3f],
            "SHA-384(\"abc\") starts with cb00753f"
        );
    }
}
