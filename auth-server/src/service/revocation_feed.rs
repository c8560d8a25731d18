//! The revocation feed (`GET /revocations?since=<cursor>`): grants and access
//! tokens revoked before they expired, for resource servers that verify our JWTs
//! locally and cache them. Every revocation path records its entry in the store's
//! cascade (`storage::ops`); this flow only reads, for authenticated resource
//! servers.
//!
//! The cursor is `<epoch>.<position>`: the epoch names this database, so a cursor
//! from another one (a restored or replaced database) is unknown. An unknown
//! cursor, one ahead of the feed, or none at all gets a snapshot of every entry
//! still stored (entries are purged only long after the tokens they cover
//! expired); the resource server merges entries either way.

use serde::Serialize;

use crate::storage::{RevocationPage, RevocationRecord, RevokedKind};

use super::clients::{self, ClientCredentials};
use super::{AppState, ServiceError, ServiceResult};

/// At most this many entries per answer; `more` says when to ask again at once.
pub const PAGE_LIMIT: i64 = 1000;

/// The `kv` row holding this database's feed epoch.
const EPOCH_KEY: &str = "revocation_feed_epoch";

/// One revoked grant (`sid`) or access token (`jti`), relevant until `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedEntry {
    pub id: String,
    pub exp: i64,
}

/// The feed's answer.
#[derive(Debug, Clone, Serialize)]
pub struct FeedPage {
    /// Where the next request starts (`since`).
    pub cursor: String,
    /// Whether this is every stored entry rather than the entries after `since`.
    pub snapshot: bool,
    /// More entries follow: ask again with `cursor` right away.
    pub more: bool,
    pub grants: Vec<FeedEntry>,
    pub jtis: Vec<FeedEntry>,
}

pub async fn read(
    state: &AppState,
    credentials: &ClientCredentials,
    since: Option<&str>,
) -> ServiceResult<FeedPage> {
    let client = clients::authenticate(state, credentials).await?;
    if !clients::is_resource_server(&client) {
        return Err(ServiceError::NotAResourceServer("read the revocation feed"));
    }
    let epoch = epoch(state).await?;
    let position = since.and_then(|cursor| position_in(cursor, epoch));
    let mut page = state
        .store
        .revocations_after(position.unwrap_or(0), PAGE_LIMIT)
        .await?;
    let snapshot = match position {
        None => true,
        Some(seq) if seq > page.head => {
            page = state.store.revocations_after(0, PAGE_LIMIT).await?;
            true
        }
        // Entries after `seq` were purged: what is left is everything.
        Some(seq) => page.oldest > seq + 1,
    };
    Ok(answer(epoch, snapshot, page))
}

/// This database's feed epoch, stored on first use.
async fn epoch(state: &AppState) -> ServiceResult<&str> {
    let epoch = state
        .revocation_epoch
        .get_or_try_init(|| async {
            let fresh = shared::secret::random_token(9);
            state.store.get_or_init_kv(EPOCH_KEY, &fresh).await
        })
        .await?;
    Ok(epoch)
}

/// The position a cursor names, if it is one of this database's.
fn position_in(cursor: &str, epoch: &str) -> Option<i64> {
    let (cursor_epoch, seq) = cursor.split_once('.')?;
    if cursor_epoch != epoch {
        return None;
    }
    seq.parse().ok().filter(|seq: &i64| *seq >= 0)
}

fn answer(epoch: &str, snapshot: bool, page: RevocationPage) -> FeedPage {
    let more = i64::try_from(page.entries.len()).unwrap_or(i64::MAX) >= PAGE_LIMIT;
    let position = match page.entries.last() {
        Some(last) if more => last.seq,
        _ => page.head,
    };
    let (grants, jtis): (Vec<RevocationRecord>, Vec<RevocationRecord>) = page
        .entries
        .into_iter()
        .partition(|e| e.kind == RevokedKind::Grant);
    let entries = |records: Vec<RevocationRecord>| {
        records
            .into_iter()
            .map(|r| FeedEntry {
                id: r.subject,
                exp: r.expires_at,
            })
            .collect()
    };
    FeedPage {
        cursor: format!("{epoch}.{position}"),
        snapshot,
        more,
        grants: entries(grants),
        jtis: entries(jtis),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(seq: i64, kind: RevokedKind) -> RevocationRecord {
        RevocationRecord {
            seq,
            kind,
            subject: format!("s{seq}"),
            expires_at: 100 + seq,
        }
    }

    #[test]
    fn cursors_belong_to_one_database() {
        assert_eq!(position_in("ep.7", "ep"), Some(7));
        assert_eq!(position_in("other.7", "ep"), None);
        assert_eq!(position_in("ep.-1", "ep"), None);
        assert_eq!(position_in("ep.x", "ep"), None);
        assert_eq!(position_in("7", "ep"), None);
    }

    #[test]
    fn a_page_splits_grants_from_tokens_and_ends_at_the_head() {
        let page = RevocationPage {
            head: 9,
            oldest: 1,
            entries: vec![record(3, RevokedKind::Grant), record(4, RevokedKind::Token)],
        };
        let answer = answer("ep", false, page);
        assert_eq!(answer.cursor, "ep.9");
        assert!(!answer.more && !answer.snapshot);
        assert_eq!(
            answer.grants,
            vec![FeedEntry {
                id: "s3".into(),
                exp: 103
            }]
        );
        assert_eq!(answer.jtis[0].id, "s4");
    }

    #[test]
    fn a_full_page_continues_after_its_last_entry() {
        let entries = (1..=PAGE_LIMIT)
            .map(|seq| record(seq, RevokedKind::Token))
            .collect();
        let page = RevocationPage {
            head: PAGE_LIMIT + 50,
            oldest: 1,
            entries,
        };
        let answer = answer("ep", true, page);
        assert!(answer.more);
        assert_eq!(answer.cursor, format!("ep.{PAGE_LIMIT}"));
    }
}
