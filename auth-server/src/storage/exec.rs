//! The little that the store operations (`ops.rs`) need from a database driver:
//! run a statement of `queries.rs` with arguments, and read the rows it returns.
//! The rusqlite store and the sqlx store each implement [`Exec`] and [`Fields`]
//! once; every operation, cascade and row mapping is then written once for both.
//!
//! The methods are `async` for sqlx. The rusqlite implementation never suspends,
//! so the rusqlite store runs an operation to completion in a single poll on the
//! calling thread (`sqlite::run`), as fast as a direct call.

use super::queries::Locking;
use super::{StoreError, StoreResult};

/// A bound statement argument. Only the types the schema uses: TEXT and BIGINT
/// (numbers and 0/1 flags). NULL is bound only to TEXT columns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    NullableText(Option<&'a str>),
    Int(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::NullableText(v)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::NullableText(v.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

/// A flag column: BIGINT 0/1 on both databases.
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(i64::from(v))
    }
}

/// `args![a, b, ...]`: the arguments of a statement, in placeholder order.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::storage::exec::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// A column value both drivers can decode.
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>
{
}

impl<T> Column for T where
    T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>
{
}

/// One result row, read by column position (the order of the `SELECT` list).
pub(crate) trait Fields {
    fn get<T: Column>(&self, index: usize) -> StoreResult<T>;
    /// Hands a TEXT column to `f` without copying it.
    fn with_text<T>(&self, index: usize, f: impl FnOnce(&str) -> StoreResult<T>) -> StoreResult<T>;
}

/// A value built from one result row (the mappers live in `rows.rs`).
pub(crate) trait FromRow: Sized {
    fn from_row(row: &impl Fields) -> StoreResult<Self>;
}

/// A connection or transaction that runs statements.
pub(crate) trait Exec {
    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> StoreResult<u64>;
    /// The first row, if any.
    async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<T>>;
    async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>>;
}

/// An [`Exec`] inside a database transaction: every statement it runs commits or
/// rolls back together. Implemented only by the stores' transaction wrappers, so
/// that an operation of several statements (a cascade) cannot be handed a bare
/// connection.
pub(crate) trait InTransaction: Exec {
    /// Whether rows must be locked explicitly (`SELECT ... FOR UPDATE`): on
    /// PostgreSQL. A SQLite write transaction already excludes every other writer.
    fn row_locks(&self) -> bool;
}

/// The first row of a locking `SELECT`, locked until the transaction ends (see
/// [`Locking`]).
pub(crate) async fn fetch_locked<T: FromRow>(
    e: &mut impl InTransaction,
    statement: &Locking,
    args: &[Arg<'_>],
) -> StoreResult<Option<T>> {
    let sql = if e.row_locks() {
        statement.for_update
    } else {
        statement.plain
    };
    e.fetch_optional(sql, args).await
}

/// A row that must exist (an aggregate, or a value just written).
pub(crate) async fn fetch_one<T: FromRow>(
    e: &mut impl Exec,
    sql: &'static str,
    args: &[Arg<'_>],
) -> StoreResult<T> {
    e.fetch_optional(sql, args)
        .await?
        .ok_or_else(|| StoreError::Failed(format!("no row returned by: {sql}")))
}
