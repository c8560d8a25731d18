//! The `Store` implementation on sqlx's `Any` driver. SQLite is the default (WAL,
//! `BEGIN IMMEDIATE` for write transactions so that concurrent writers queue on the
//! busy timeout instead of failing); the SQL is portable to PostgreSQL (`$n`
//! placeholders, `ON CONFLICT`, BIGINT unix seconds).

use std::borrow::Cow;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr, Transaction};

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
    Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("init"),
        MigrationType::Simple,
        include_str!("../../migrations/0001_init.sql").into_sql_str(),
        false,
    )])
}

fn pool_options(sqlite: bool, max_connections: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(std::time::Duration::from_secs(10));
    if !sqlite {
        return options;
    }
    // In WAL mode, NORMAL never corrupts the database; a power loss may lose the
    // last transactions. Codes and tokens are short-lived, so we trade that for
    // write throughput.
    options.after_connect(|conn, _meta| {
        Box::pin(async move {
            sqlx::query("PRAGMA synchronous=NORMAL")
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
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&write)
                .await?;
        }
        migrator().run(&write).await?;
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

    async fn begin(&self) -> StoreResult<Transaction<'static, sqlx::Any>> {
        Ok(if self.sqlite {
            self.write.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.write.begin().await?
        })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn user(row: &AnyRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::from_stored(&row.try_get::<String, _>("role")?),
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn client(row: &AnyRow) -> StoreResult<ClientRecord> {
    let metadata: String = row.try_get("metadata")?;
    let client_id: String = row.try_get("client_id")?;
    Ok(ClientRecord {
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("client {client_id} metadata: {e}")))?,
        client_id,
        client_name: row.try_get("client_name")?,
        secret_hash: row.try_get("secret_hash")?,
        source: ClientSource::parse(&row.try_get::<String, _>("source")?)?,
        registration_token_hash: row.try_get("registration_token_hash")?,
        can_introspect: row.try_get::<i64, _>("can_introspect")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn code(row: &AnyRow) -> StoreResult<AuthCodeRecord> {
    Ok(AuthCodeRecord {
        code_hash: row.try_get("code_hash")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        code_challenge: row.try_get("code_challenge")?,
        nonce: row.try_get("nonce")?,
        auth_time: row.try_get("auth_time")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        grant_id: row.try_get("grant_id")?,
    })
}

fn grant(row: &AnyRow) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        auth_time: row.try_get("auth_time")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn refresh(row: &AnyRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: row.try_get("token_hash")?,
        grant_id: row.try_get("grant_id")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        rotated_at: row.try_get("rotated_at")?,
    })
}

fn access(row: &AnyRow) -> StoreResult<AccessTokenRecord> {
    Ok(AccessTokenRecord {
        jti: row.try_get("jti")?,
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        scope: row.try_get("scope")?,
        audience: row.try_get("audience")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn key(row: &AnyRow) -> StoreResult<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        private_pkcs8_b64: row.try_get("private_pkcs8")?,
        public_b64: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

const INSERT_ACCESS: &str = "INSERT INTO access_tokens (jti, grant_id, client_id, user_id, scope, audience, issued_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)";
const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at, rotated_at) VALUES ($1, $2, $3, $4, $5, NULL)";

async fn insert_issued(
    tx: &mut Transaction<'static, sqlx::Any>,
    issued: &Issued,
) -> StoreResult<()> {
    let a = &issued.access;
    sqlx::query(INSERT_ACCESS)
        .bind(&a.jti)
        .bind(&a.grant_id)
        .bind(&a.client_id)
        .bind(&a.user_id)
        .bind(&a.scope)
        .bind(&a.audience)
        .bind(a.issued_at)
        .bind(a.expires_at)
        .execute(&mut **tx)
        .await?;
    if let Some(r) = &issued.refresh {
        sqlx::query(INSERT_REFRESH)
            .bind(&r.token_hash)
            .bind(&r.grant_id)
            .bind(&r.scope)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE grants SET expires_at = $1 WHERE id = $2 AND expires_at < $1")
            .bind(r.expires_at)
            .bind(&r.grant_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn audit_query(a: &AuditRecord) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query("INSERT INTO audit_log (id, at_ms, event, username, client_id, ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(a.at_ms)
        .bind(&a.event)
        .bind(&a.username)
        .bind(&a.client_id)
        .bind(&a.ip)
        .bind(&a.detail)
}

async fn insert_audit(
    tx: &mut Transaction<'static, sqlx::Any>,
    a: &AuditRecord,
) -> StoreResult<()> {
    audit_query(a).execute(&mut **tx).await?;
    Ok(())
}

async fn revoke_grant_tx(
    tx: &mut Transaction<'static, sqlx::Any>,
    grant_id: &str,
    now: i64,
    forget_consent: bool,
) -> StoreResult<bool> {
    let row = sqlx::query("SELECT user_id, client_id FROM grants WHERE id = $1")
        .bind(grant_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let changed =
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(grant_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    sqlx::query(
        "UPDATE access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(grant_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE grant_id = $1")
        .bind(grant_id)
        .execute(&mut **tx)
        .await?;
    if forget_consent {
        let user_id: Option<String> = row.try_get("user_id")?;
        let client_id: String = row.try_get("client_id")?;
        if let Some(user_id) = user_id {
            sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(changed > 0)
}

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        let res = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, email, name, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&u.id)
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(u.role.as_str())
        .bind(&u.email)
        .bind(&u.name)
        .bind(flag(u.disabled))
        .bind(u.created_at)
        .execute(&self.write)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("user {:?}", u.username)));
        }
        Ok(())
    }

    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn find_user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(user)
            .collect()
    }

    async fn set_password(&self, username: &str, hash: &str, now: i64) -> StoreResult<bool> {
        let res =
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3")
                .bind(hash)
                .bind(now)
                .bind(username)
                .execute(&self.write)
                .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn set_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let res =
            sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3")
                .bind(flag(disabled))
                .bind(now)
                .bind(username)
                .execute(&mut *tx)
                .await?;
        if res.rows_affected() == 0 {
            return Ok(false);
        }
        if disabled {
            let ids: Vec<String> = sqlx::query(
                "SELECT g.id FROM grants g JOIN users u ON u.id = g.user_id WHERE u.username = $1 AND g.revoked_at IS NULL",
            )
            .bind(username)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?;
            for id in ids {
                revoke_grant_tx(&mut tx, &id, now, false).await?;
            }
            sqlx::query(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            )
            .bind(username)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn upsert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        let metadata =
            serde_json::to_string(&c.metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO clients (client_id, client_name, secret_hash, metadata, source, registration_token_hash, can_introspect, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (client_id) DO UPDATE SET client_name = excluded.client_name, secret_hash = excluded.secret_hash, \
             metadata = excluded.metadata, source = excluded.source, can_introspect = excluded.can_introspect, updated_at = excluded.updated_at",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(&c.secret_hash)
        .bind(metadata)
        .bind(c.source.as_str())
        .bind(&c.registration_token_hash)
        .bind(flag(c.can_introspect))
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        let metadata =
            serde_json::to_string(&c.metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = sqlx::query(
            "INSERT INTO clients (client_id, client_name, secret_hash, metadata, source, registration_token_hash, can_introspect, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(&c.secret_hash)
        .bind(metadata)
        .bind(c.source.as_str())
        .bind(&c.registration_token_hash)
        .bind(flag(c.can_introspect))
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&self.write)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("client {:?}", c.client_id)));
        }
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        sqlx::query("SELECT * FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(client)
            .transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        sqlx::query("SELECT * FROM clients ORDER BY created_at, client_id")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(client)
            .collect()
    }

    async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &ClientMetadata,
        now: i64,
    ) -> StoreResult<bool> {
        let json =
            serde_json::to_string(metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = sqlx::query("UPDATE clients SET metadata = $1, client_name = $2, updated_at = $3 WHERE client_id = $4")
            .bind(json)
            .bind(&metadata.client_name)
            .bind(now)
            .bind(client_id)
            .execute(&self.write)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let ids: Vec<String> =
            sqlx::query("SELECT id FROM grants WHERE client_id = $1 AND revoked_at IS NULL")
                .bind(client_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
        for id in ids {
            revoke_grant_tx(&mut tx, &id, now, false).await?;
        }
        sqlx::query(
            "UPDATE access_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM auth_codes WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM consents WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY created_at")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(key)
            .collect()
    }

    async fn rotate_keys(&self, k: &StoredKey, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, public_key, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_pkcs8_b64)
        .bind(&k.public_b64)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_key(&self, k: &StoredKey) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let existing: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM signing_keys WHERE retired_at IS NULL")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if existing > 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, public_key, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_pkcs8_b64)
        .bind(&k.public_b64)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (id_hash, user_id, auth_time, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(&s.id_hash)
            .bind(&s.user_id)
            .bind(s.auth_time)
            .bind(s.expires_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn find_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1 AND expires_at > $2")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(SessionRecord {
                id_hash: r.try_get("id_hash")?,
                user_id: r.try_get("user_id")?,
                auth_time: r.try_get("auth_time")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn find_consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.read)
                .await?
                .map(|r| r.try_get::<String, _>("scope"))
                .transpose()?,
        )
    }

    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn insert_code(&self, c: &AuthCodeRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, scope, resource, code_challenge, nonce, auth_time, created_at, expires_at, used_at, grant_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(&c.redirect_uri)
        .bind(&c.scope)
        .bind(&c.resource)
        .bind(&c.code_challenge)
        .bind(&c.nonce)
        .bind(c.auth_time)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM auth_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(CodeRedemption::NotFound);
        };
        let record = code(&row)?;
        let used: Option<i64> = row.try_get("used_at")?;
        if used.is_some() {
            if record.grant_id.is_none() {
                // Replayed while the first redemption is still minting its tokens:
                // mark the code so that `create_grant` refuses to attach a grant.
                sqlx::query(
                    "UPDATE auth_codes SET grant_id = $1 WHERE code_hash = $2 AND grant_id IS NULL",
                )
                .bind(REPLAYED_MARK)
                .bind(code_hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            return Ok(CodeRedemption::Replayed(record));
        }
        let res = sqlx::query(
            "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if res.rows_affected() == 1 {
            Ok(CodeRedemption::Fresh(record))
        } else {
            Ok(CodeRedemption::Replayed(record))
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
        sqlx::query(
            "INSERT INTO grants (id, user_id, client_id, scope, resource, auth_time, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(&g.id)
        .bind(&g.user_id)
        .bind(&g.client_id)
        .bind(&g.scope)
        .bind(&g.resource)
        .bind(g.auth_time)
        .bind(g.created_at)
        .bind(g.expires_at)
        .execute(&mut *tx)
        .await?;
        insert_issued(&mut tx, issued).await?;
        if let Some(hash) = code_hash {
            let attached = sqlx::query(
                "UPDATE auth_codes SET grant_id = $1 WHERE code_hash = $2 AND grant_id IS NULL",
            )
            .bind(&g.id)
            .bind(hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if attached != 1 {
                // The code was replayed meanwhile (RFC 6749 §10.5): issue nothing.
                tx.rollback().await?;
                return Err(StoreError::Conflict("a grant for this code".into()));
            }
        }
        if let Some(a) = audit {
            insert_audit(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        sqlx::query("SELECT * FROM grants WHERE id = $1")
            .bind(grant_id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(grant)
            .transpose()
    }

    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(refresh)
            .transpose()
    }

    async fn rotate_refresh(&self, old_hash: &str, now: i64, issued: &Issued) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let res = sqlx::query("UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL")
            .bind(now)
            .bind(old_hash)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() != 1 {
            return Ok(false);
        }
        insert_issued(&mut tx, issued).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_tokens(&self, issued: &Issued) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_issued(&mut tx, issued).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_access_token(&self, a: &AccessTokenRecord) -> StoreResult<()> {
        sqlx::query(INSERT_ACCESS)
            .bind(&a.jti)
            .bind(&a.grant_id)
            .bind(&a.client_id)
            .bind(&a.user_id)
            .bind(&a.scope)
            .bind(&a.audience)
            .bind(a.issued_at)
            .bind(a.expires_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn find_access_token(&self, jti: &str) -> StoreResult<Option<AccessTokenRecord>> {
        sqlx::query("SELECT * FROM access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(access)
            .transpose()
    }

    async fn revoke_access_token(&self, jti: &str, now: i64) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(jti)
        .execute(&self.write)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
        forget_consent: bool,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let changed = revoke_grant_tx(&mut tx, grant_id, now, forget_consent).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn active_grants(&self, now: i64) -> StoreResult<Vec<GrantSummary>> {
        let rows = sqlx::query(
            "SELECT g.*, u.username AS username, c.client_name AS client_name FROM grants g \
             JOIN users u ON u.id = g.user_id LEFT JOIN clients c ON c.client_id = g.client_id \
             WHERE g.revoked_at IS NULL AND g.expires_at > $1 ORDER BY g.created_at, g.id",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        let tokens = sqlx::query(
            "SELECT jti, grant_id FROM access_tokens WHERE grant_id IS NOT NULL AND revoked_at IS NULL AND expires_at > $1 ORDER BY issued_at",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        let mut by_grant: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for t in &tokens {
            let gid: String = t.try_get("grant_id")?;
            by_grant.entry(gid).or_default().push(t.try_get("jti")?);
        }
        rows.iter()
            .map(|r| {
                let g = grant(r)?;
                Ok(GrantSummary {
                    token_ids: by_grant.remove(&g.id).unwrap_or_default(),
                    username: r.try_get("username")?,
                    client_name: r.try_get("client_name")?,
                    grant: g,
                })
            })
            .collect()
    }

    async fn user_stats(&self, now: i64) -> StoreResult<Vec<UserStat>> {
        sqlx::query(
            "SELECT u.username AS username, u.role AS role, u.disabled AS disabled, \
             (SELECT COUNT(*) FROM grants g WHERE g.user_id = u.id AND g.revoked_at IS NULL AND g.expires_at > $1) AS active_grants \
             FROM users u ORDER BY u.username",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| {
            Ok(UserStat {
                username: r.try_get("username")?,
                role: r.try_get("role")?,
                disabled: r.try_get::<i64, _>("disabled")? != 0,
                active_grants: r.try_get("active_grants")?,
            })
        })
        .collect()
    }

    async fn audit(&self, a: &AuditRecord) -> StoreResult<()> {
        audit_query(a).execute(&self.write).await?;
        Ok(())
    }

    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query("SELECT * FROM audit_log ORDER BY at_ms DESC LIMIT $1")
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    at_ms: r.try_get("at_ms")?,
                    event: r.try_get("event")?,
                    username: r.try_get("username")?,
                    client_id: r.try_get("client_id")?,
                    ip: r.try_get("ip")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn get_or_init_kv(&self, k: &str, init: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(k)
            .bind(init)
            .execute(&self.write)
            .await?;
        Ok(sqlx::query("SELECT value FROM kv WHERE key = $1")
            .bind(k)
            .fetch_one(&self.write)
            .await?
            .try_get("value")?)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut n = 0;
        // Codes are kept a while after expiry so that a late replay is still detected.
        n += sqlx::query("DELETE FROM auth_codes WHERE expires_at < $1")
            .bind(now - 3600)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        n += sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        n += sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1")
            .bind(now - 3600)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        n += sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
