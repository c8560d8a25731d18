//! The command line: `serve`, and the administration commands that work directly
//! on the database (`user`, `client`, `grants`, `keys`, `audit`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use crate::app::Application;
use crate::domain::key_encryption::KeyEncryption;
use crate::domain::scope_policy::Role;
use crate::domain::{keys, now, passwords};
use crate::service::bootstrap::{bootstrap, new_user};
use crate::service::keys_at_rest;
use crate::settings::Settings;
use crate::storage::{Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "auth-server",
    version,
    about = "OAuth 2.1 authorization server for MCP clients"
)]
pub struct Cli {
    /// TOML configuration file (env `AUTH__...` variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The database: a PostgreSQL URL (`postgres://USER:PASSWORD@HOST:PORT/DB`,
    /// overrides `database.url`), a `sqlite:` URL, or a SQLite file path (overrides
    /// `database.path`).
    #[arg(long, global = true, value_name = "URL|PATH")]
    pub db: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage local user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registered clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Inspect and revoke grants.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the server this configuration describes: GET /healthz on its listen
    /// address (exit 0 when healthy, 1 otherwise; the container health check).
    Healthcheck,
    /// Show the newest audit events.
    Audit {
        /// How many events to show (1..=10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (HOST:PORT; port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<String>,
    /// Issuer URL (as clients reach this server).
    #[arg(long)]
    pub issuer: Option<String>,
    /// A resource this server mints tokens for (repeatable).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// Seed the demo users and the mcp-server client.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        username: String,
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Change a user's password.
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user (revokes their grants and sessions).
    Disable { username: String },
    /// Enable a user.
    Enable { username: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List clients.
    List,
    /// Delete a client and revoke everything it holds.
    Delete { client_id: String },
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List active grants.
    List,
    /// Revoke a grant by id.
    Revoke { grant_id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new active signing key; old keys stay published until their tokens expire.
    Rotate,
    /// List signing keys.
    List,
    /// Re-encrypt every stored secret key under the current key-encryption key
    /// (`secrets.key_file`), reading the old ones with `secrets.previous_key_files`;
    /// one transaction.
    Rewrap,
}

/// Loads settings from the file and env, then applies command-line overrides.
pub fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(db) = &cli.db {
        if crate::storage::supported_url(db) {
            settings.database.url = db.clone();
        } else {
            settings.database.path = db.clone();
            settings.database.url.clear();
        }
    }
    if let Command::Serve(args) = &cli.command {
        if let Some(listen) = &args.listen {
            settings.server.listen = listen.clone();
        }
        if let Some(issuer) = &args.issuer {
            settings.server.issuer = issuer.clone();
        }
        if !args.resources.is_empty() {
            settings.oauth.resources = args.resources.clone();
        }
        if args.demo {
            settings.demo.enabled = true;
        }
    }
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(settings)
}

async fn open_store(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let url = settings.database_url();
    crate::storage::open(&url, 2)
        .await
        .with_context(|| format!("opening the database {}", crate::storage::redact_url(&url)))
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let prompt = |label: &str| -> anyhow::Result<String> {
        eprint!("{label}");
        std::io::stderr().flush()?;
        let _ = std::process::Command::new("stty").arg("-echo").status();
        let mut line = String::new();
        let res = stdin.lock().read_line(&mut line);
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
        res?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = prompt("Password: ")?;
    let second = prompt("Repeat password: ")?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}

fn hash_new_password(password: &str) -> anyhow::Result<String> {
    passwords::check_policy(password)?;
    Ok(passwords::hash(password)?)
}

fn when(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = load_settings(&cli)?;
    match cli.command {
        Command::Serve(_) => serve(settings).await,
        Command::Healthcheck => {
            let url = shared::healthcheck::probe(&settings.server.listen, "/healthz").await?;
            println!("healthy: {url}");
            Ok(())
        }
        Command::User(cmd) => user(settings, cmd).await,
        Command::Client(cmd) => {
            let store = open_store(&settings).await?;
            match cmd {
                ClientCommand::List => {
                    println!("{:<44} {:<8} {:<20} NAME", "CLIENT_ID", "SOURCE", "AUTH");
                    for c in store.list_clients().await? {
                        println!(
                            "{:<44} {:<8} {:<20} {}",
                            printable(&c.client_id),
                            c.source,
                            printable(&c.metadata.token_endpoint_auth_method),
                            printable(c.client_name.as_deref().unwrap_or("-"))
                        );
                    }
                }
                ClientCommand::Delete { client_id } => {
                    if !store.delete_client(&client_id, now()).await? {
                        bail!("no client {client_id:?}");
                    }
                    println!("deleted client {client_id} and revoked its grants");
                }
            }
            Ok(())
        }
        Command::Grants(cmd) => {
            let store = open_store(&settings).await?;
            match cmd {
                GrantsCommand::List => {
                    println!(
                        "{:<34} {:<16} {:<24} {:<26} EXPIRES",
                        "GRANT_ID", "USER", "CLIENT", "SCOPE"
                    );
                    for g in store.active_grants(now()).await? {
                        println!(
                            "{:<34} {:<16} {:<24} {:<26} {}",
                            g.grant.id,
                            printable(&g.username),
                            printable(g.client_name.as_deref().unwrap_or(&g.grant.client_id)),
                            g.grant.scope,
                            when(g.grant.expires_at)
                        );
                    }
                }
                GrantsCommand::Revoke { grant_id } => {
                    if !store.revoke_grant(&grant_id, now(), true).await? {
                        bail!("no active grant {grant_id:?}");
                    }
                    println!("revoked grant {grant_id}");
                }
            }
            Ok(())
        }
        Command::Keys(cmd) => {
            let store = open_store(&settings).await?;
            let enc = keys_at_rest::key_encryption(&settings.secrets)?;
            match cmd {
                KeysCommand::Rotate => {
                    // The new key is sealed like the stored ones, or not at all.
                    keys_at_rest::seal_plaintext_secrets(store.as_ref(), &enc).await?;
                    let kid = rotate_keys(store.as_ref(), &enc).await?;
                    println!("new active signing key {kid}; previous keys stay in JWKS until their tokens expire");
                }
                KeysCommand::List => {
                    println!(
                        "{:<20} {:<6} {:<26} {:<26} AT REST",
                        "KID", "ALG", "CREATED", "RETIRED"
                    );
                    for k in store.list_keys().await? {
                        println!(
                            "{:<20} {:<6} {:<26} {:<26} {}",
                            k.kid,
                            k.alg,
                            when(k.created_at),
                            k.retired_at.map(when).unwrap_or_else(|| "active".into()),
                            keys_at_rest::describe_at_rest(&k)
                        );
                    }
                }
                KeysCommand::Rewrap => {
                    let done = keys_at_rest::rewrap(store.as_ref(), &enc).await?;
                    println!(
                        "re-encrypted {} stored secret(s) under key-encryption key {}; {} already were",
                        done.resealed,
                        enc.current_id().unwrap_or("-"),
                        done.unchanged
                    );
                }
            }
            Ok(())
        }
        Command::Audit { limit } => {
            let store = open_store(&settings).await?;
            for a in store.list_audit(limit).await? {
                println!(
                    "{} {:<16} user={} client={} ip={} {}",
                    when(a.at_ms / 1000),
                    a.event,
                    printable(a.username.as_deref().unwrap_or("-")),
                    printable(a.client_id.as_deref().unwrap_or("-")),
                    a.ip.as_deref().unwrap_or("-"),
                    printable(&a.detail)
                );
            }
            Ok(())
        }
    }
}

/// Adds a new active signing key, its private part sealed with `enc` (the library
/// function behind `keys rotate`).
pub async fn rotate_keys(store: &dyn Store, enc: &KeyEncryption) -> anyhow::Result<String> {
    let key = keys::generate(now())?;
    store
        .rotate_keys(&keys_at_rest::seal_key(enc, &key)?, now())
        .await?;
    Ok(key.kid)
}

async fn user(settings: Settings, cmd: UserCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let enc = keys_at_rest::key_encryption(&settings.secrets)?;
    keys_at_rest::seal_plaintext_secrets(store.as_ref(), &enc).await?;
    bootstrap(
        &Settings {
            demo: Default::default(),
            ..settings.clone()
        },
        store.as_ref(),
        &enc,
    )
    .await?;
    match cmd {
        UserCommand::Add {
            username,
            role,
            email,
            name,
            password_stdin,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be user or admin");
            };
            if username.is_empty()
                || username.len() > 64
                || username
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                bail!("the username must be 1-64 characters without spaces");
            }
            let password = read_password(password_stdin)?;
            let hash = hash_new_password(&password)?;
            match store
                .create_user(&new_user(&username, &hash, role, email, name))
                .await
            {
                Ok(()) => println!("created {} {username}", role.as_str()),
                Err(StoreError::Conflict(_)) => bail!("user {username:?} already exists"),
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::List => {
            println!(
                "{:<24} {:<6} {:<9} {:<16} EMAIL",
                "USERNAME", "ROLE", "STATUS", "SOURCE"
            );
            for u in store.list_users().await? {
                println!(
                    "{:<24} {:<6} {:<9} {:<16} {}",
                    printable(&u.username),
                    u.role,
                    if u.disabled { "disabled" } else { "active" },
                    printable(&u.source()),
                    printable(u.email.as_deref().unwrap_or("-"))
                );
            }
        }
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            match store.find_user_by_name(&username).await? {
                None => bail!("no user {username:?}"),
                Some(u) if u.idp.is_some() => bail!(
                    "{username} signs in through {} and has no password here",
                    u.source()
                ),
                Some(_) => {}
            }
            let password = read_password(password_stdin)?;
            let hash = hash_new_password(&password)?;
            store.set_password(&username, &hash, now()).await?;
            println!("password changed for {username}");
        }
        UserCommand::Disable { username } => {
            if !store.set_disabled(&username, true, now()).await? {
                bail!("no user {username:?}");
            }
            println!("disabled {username}; their grants and sessions were revoked");
        }
        UserCommand::Enable { username } => {
            if !store.set_disabled(&username, false, now()).await? {
                bail!("no user {username:?}");
            }
            println!("enabled {username}");
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let handle = app.handle();
    println!("listening on http://{}", app.local_addr());
    if let Some(metrics) = app.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    let _ = std::io::stdout().flush();
    tokio::spawn(async move {
        shutdown_signal().await;
        log::info!("shutting down");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Text that came from the network (usernames typed into the login form, client
/// names from registrations) with control characters escaped, so that printing it
/// cannot inject terminal escape sequences or fake lines.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn network_text_is_printed_without_control_characters() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("é ü 名前"), "é ü 名前");
        let hostile = "x\u{1b}]0;pwned\u{7}\nfake 2026 login_success";
        let shown = printable(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}"));
        assert!(shown.contains("\\n"));
    }

    #[test]
    fn db_takes_a_postgres_url_a_sqlite_url_or_a_path() {
        let settings = |db: &str| {
            let cli = Cli::try_parse_from(["auth-server", "--db", db, "user", "list"]).unwrap();
            load_settings(&cli).unwrap()
        };
        let pg = settings("postgres://auth:pw@127.0.0.1:5432/auth");
        assert_eq!(pg.database_url(), "postgres://auth:pw@127.0.0.1:5432/auth");
        let url = settings("sqlite://data/x.db?mode=rwc");
        assert_eq!(url.database_url(), "sqlite://data/x.db?mode=rwc");
        let path = settings("/tmp/auth.db");
        assert_eq!(path.database.path, "/tmp/auth.db");
        assert_eq!(path.database_url(), "sqlite:///tmp/auth.db?mode=rwc");
    }

    #[test]
    fn audit_limit_is_validated() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["auth-server", "audit", "--limit", "0"]).is_err());
        assert!(parse(&["auth-server", "audit", "--limit", "10001"]).is_err());
        match parse(&["auth-server", "audit", "--limit", "5"])
            .unwrap()
            .command
        {
            Command::Audit { limit } => assert_eq!(limit, 5),
            other => panic!("unexpected {other:?}"),
        }
    }
}
