//! Row mappers, one per record, for both drivers. Each reads the columns in the
//! order of its `SELECT` list in `queries.rs`.

use super::exec::{Column, Fields, FromRow};
use super::*;

impl FromRow for UserRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(UserRecord {
            id: r.get(0)?,
            username: r.get(1)?,
            password_hash: r.get(2)?,
            role: Role::from_stored(&r.get::<String>(3)?),
            email: r.get(4)?,
            name: r.get(5)?,
            disabled: r.get::<i64>(6)? != 0,
            created_at: r.get(7)?,
            idp: r.get(8)?,
            idp_subject: r.get(9)?,
        })
    }
}

impl FromRow for UpstreamLoginRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(UpstreamLoginRecord {
            state_hash: r.get(0)?,
            idp: r.get(1)?,
            browser_hash: r.get(2)?,
            nonce_hash: r.get(3)?,
            pkce_verifier: r.get(4)?,
            request: r.get(5)?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
        })
    }
}

impl FromRow for ClientRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        let client_id: String = r.get(0)?;
        let metadata = r.with_text(3, |json| {
            serde_json::from_str(json)
                .map_err(|e| StoreError::Corrupt(format!("client {client_id} metadata: {e}")))
        })?;
        Ok(ClientRecord {
            metadata,
            client_id,
            client_name: r.get(1)?,
            secret_hash: r.get(2)?,
            source: ClientSource::parse(&r.get::<String>(4)?)?,
            registration_token_hash: r.get(5)?,
            can_introspect: r.get::<i64>(6)? != 0,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
        })
    }
}

impl FromRow for AuthCodeRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(AuthCodeRecord {
            code_hash: r.get(0)?,
            client_id: r.get(1)?,
            user_id: r.get(2)?,
            redirect_uri: r.get(3)?,
            scope: r.get(4)?,
            resource: r.get(5)?,
            code_challenge: r.get(6)?,
            nonce: r.get(7)?,
            auth_time: r.get(8)?,
            created_at: r.get(9)?,
            expires_at: r.get(10)?,
            grant_id: r.get(11)?,
        })
    }
}

impl FromRow for GrantRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(GrantRecord {
            id: r.get(0)?,
            user_id: r.get(1)?,
            client_id: r.get(2)?,
            scope: r.get(3)?,
            resource: r.get(4)?,
            auth_time: r.get(5)?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
            revoked_at: r.get(8)?,
        })
    }
}

/// A row of `ACTIVE_GRANTS`: the grant, then its username and client name. The
/// token ids come from a second query.
impl FromRow for GrantSummary {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(GrantSummary {
            grant: GrantRecord::from_row(r)?,
            username: r.get(9)?,
            client_name: r.get(10)?,
            token_ids: Vec::new(),
        })
    }
}

impl FromRow for RefreshRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(RefreshRecord {
            token_hash: r.get(0)?,
            grant_id: r.get(1)?,
            scope: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            rotated_at: r.get(5)?,
        })
    }
}

impl FromRow for AccessTokenRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(AccessTokenRecord {
            jti: r.get(0)?,
            grant_id: r.get(1)?,
            client_id: r.get(2)?,
            user_id: r.get(3)?,
            scope: r.get(4)?,
            audience: r.get(5)?,
            issued_at: r.get(6)?,
            expires_at: r.get(7)?,
            revoked_at: r.get(8)?,
        })
    }
}

impl FromRow for RevocationRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(RevocationRecord {
            seq: r.get(0)?,
            kind: RevokedKind::parse(&r.get::<String>(1)?)?,
            subject: r.get(2)?,
            expires_at: r.get(3)?,
        })
    }
}

impl FromRow for StoredKey {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(StoredKey {
            kid: r.get(0)?,
            alg: r.get(1)?,
            private_pkcs8_b64: r.get(2)?,
            public_b64: r.get(3)?,
            created_at: r.get(4)?,
            retired_at: r.get(5)?,
        })
    }
}

impl FromRow for SessionRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(SessionRecord {
            id_hash: r.get(0)?,
            user_id: r.get(1)?,
            auth_time: r.get(2)?,
            expires_at: r.get(3)?,
        })
    }
}

impl FromRow for AuditRecord {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(AuditRecord {
            at_ms: r.get(0)?,
            event: r.get(1)?,
            username: r.get(2)?,
            client_id: r.get(3)?,
            ip: r.get(4)?,
            detail: r.get(5)?,
        })
    }
}

impl FromRow for UserStat {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok(UserStat {
            username: r.get(0)?,
            role: r.get(1)?,
            disabled: r.get::<i64>(2)? != 0,
            active_grants: r.get(3)?,
        })
    }
}

/// A statement run for its success only (`SELECT 1`).
impl FromRow for () {
    fn from_row(_: &impl Fields) -> StoreResult<Self> {
        Ok(())
    }
}

impl FromRow for String {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        r.get(0)
    }
}

impl FromRow for i64 {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        r.get(0)
    }
}

impl<A: Column, B: Column> FromRow for (A, B) {
    fn from_row(r: &impl Fields) -> StoreResult<Self> {
        Ok((r.get(0)?, r.get(1)?))
    }
}
