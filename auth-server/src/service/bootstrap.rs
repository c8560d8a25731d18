//! What the server finds in storage before it starts: the first signing key, the
//! configured clients, and in demo mode the demo users and the resource server's
//! client; with demo mode off, the demo's public credentials are retired.

use anyhow::Context as _;

use crate::domain::key_encryption::KeyEncryption;
use crate::domain::registration_policy::ClientMetadata;
use crate::domain::scope_policy::Role;
use crate::domain::{keys, now, passwords};
use crate::settings::{ClientConfig, Settings};
use crate::storage::{ClientRecord, ClientSource, Store, StoreError, UserRecord};

use super::clients::client_record;
use super::keys_at_rest::seal_key;

/// The demo accounts with their published passwords.
const DEMO_USERS: [(&str, &str, Role, &str); 3] = [
    ("inspector", "inspector123", Role::Admin, "MCP Inspector"),
    ("admin", "admin123", Role::Admin, "Admin User"),
    ("demo", "demo123", Role::User, "Demo User"),
];

/// Server start without demo mode on a database that once ran with `--demo`: the
/// demo client's secret and the demo passwords are public, so the client is removed
/// and demo accounts that still have their published password are disabled.
pub async fn retire_demo_leftovers(store: &dyn Store) -> anyhow::Result<()> {
    if let Some(client) = store.find_client("mcp-server").await? {
        if client.source == ClientSource::Demo {
            store.delete_client(&client.client_id, now()).await?;
            log::warn!(
                "demo mode is off: removed the demo client mcp-server (its secret is public); configure a client in [[clients]] instead"
            );
        }
    }
    for (username, password, _, _) in DEMO_USERS {
        let Some(user) = store.find_user_by_name(username).await? else {
            continue;
        };
        if user.disabled {
            continue;
        }
        let hash = user.password_hash.clone();
        let still_public =
            tokio::task::spawn_blocking(move || passwords::verify(password, &hash)).await?;
        if still_public {
            store.set_disabled(username, true, now()).await?;
            log::warn!(
                "demo mode is off: disabled the account {username}, which still has its published demo password (set a new one with `auth-server user passwd {username}`, then `auth-server user enable {username}`)"
            );
        }
    }
    Ok(())
}

/// Creates the first signing key (its private part sealed with `enc`), configured
/// clients and (with `demo.enabled`) the demo users and mcp-server's client.
/// Idempotent.
pub async fn bootstrap(
    settings: &Settings,
    store: &dyn Store,
    enc: &KeyEncryption,
) -> anyhow::Result<()> {
    if store
        .list_keys()
        .await?
        .iter()
        .all(|k| k.retired_at.is_some())
    {
        let key = keys::generate(now()).context("generating the signing key")?;
        if store.insert_first_key(&seal_key(enc, &key)?).await? {
            log::info!("generated signing key {}", key.kid);
        }
    }
    for c in &settings.clients {
        store.upsert_client(&configured_client(c)).await?;
    }
    if settings.demo.enabled {
        for (username, password, role, name) in DEMO_USERS {
            if store.find_user_by_name(username).await?.is_some() {
                continue;
            }
            let password = password.to_string();
            let hash = tokio::task::spawn_blocking(move || passwords::hash(&password)).await??;
            let user = new_user(
                username,
                &hash,
                role,
                Some(format!("{username}@example.com")),
                Some(name.to_string()),
            );
            match store.create_user(&user).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let demo_client = ClientConfig {
            client_id: "mcp-server".into(),
            client_name: "MCP server (resource server)".into(),
            client_secret: settings.demo.mcp_server_client_secret.clone(),
            grant_types: vec!["client_credentials".into()],
            scope: format!(
                "{} {}",
                shared::scopes::AUTH_ADMIN,
                shared::scopes::AUTH_INTROSPECT
            ),
            can_introspect: true,
            ..Default::default()
        };
        let mut record = configured_client(&demo_client);
        record.source = ClientSource::Demo;
        store.upsert_client(&record).await?;
    }
    Ok(())
}

pub fn new_user(
    username: &str,
    hash: &str,
    role: Role,
    email: Option<String>,
    name: Option<String>,
) -> UserRecord {
    UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        password_hash: hash.to_string(),
        role,
        email,
        name,
        disabled: false,
        created_at: now(),
        idp: None,
        idp_subject: None,
    }
}

fn configured_client(c: &ClientConfig) -> ClientRecord {
    let secret_hash = if !c.client_secret_sha256.is_empty() {
        Some(c.client_secret_sha256.clone())
    } else if !c.client_secret.is_empty() {
        Some(shared::secret::sha256_b64url(c.client_secret.expose()))
    } else {
        None
    };
    let grant_types = c.effective_grant_types();
    let uses_code = grant_types.iter().any(|g| g == "authorization_code");
    let method = if secret_hash.is_some() {
        "client_secret_basic"
    } else {
        "none"
    };
    let name = (!c.client_name.is_empty()).then(|| c.client_name.clone());
    let metadata = ClientMetadata {
        redirect_uris: c.redirect_uris.clone(),
        token_endpoint_auth_method: method.into(),
        grant_types,
        response_types: if uses_code {
            vec!["code".into()]
        } else {
            Vec::new()
        },
        client_name: name.clone(),
        client_uri: None,
        logo_uri: None,
        scope: shared::ScopeSet::parse(&c.scope)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        contacts: Vec::new(),
        tos_uri: None,
        policy_uri: None,
        software_id: None,
        software_version: None,
        application_type: "web".into(),
    };
    client_record(
        &c.client_id,
        name,
        secret_hash,
        metadata,
        ClientSource::Config,
        c.can_introspect,
    )
}
