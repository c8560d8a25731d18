//! The stored secrets — the signing keys' private parts and the cookie key — go
//! into storage and come out of it only through this module: sealed under the
//! configured key-encryption key (`domain::key_encryption`), opened when the key
//! ring or the cookie jar is built. At start-up every stored secret must open
//! with the configured keys, so a wrong key stops the server instead of leaving it
//! to mint a new signing key or cookie key; plaintext secrets of a database written
//! without a key are sealed in place.

use anyhow::Context as _;
use shared::Secret;

use crate::domain::key_encryption::{
    AtRest, KeyEncryption, KeyEncryptionKey, Opened, SealError, SecretSlot,
};
use crate::domain::keys::StoredKey;
use crate::settings::SecretsSettings;
use crate::storage::{SecretUpdate, Store};

/// The `kv` row of the cookie jar's master key.
pub const COOKIE_KEY: &str = "cookie_key";

/// The configured KEKs, read from `secrets.key_file` / `secrets.key` and their
/// `previous_*` lists. No KEK configured: values are stored in plaintext.
pub fn key_encryption(settings: &SecretsSettings) -> anyhow::Result<KeyEncryption> {
    let current = if !settings.key_file.trim().is_empty() {
        kek_from_file("secrets.key_file", &settings.key_file)?
    } else if !settings.key.is_empty() {
        KeyEncryptionKey::from_base64(settings.key.expose())
            .context("secrets.key (AUTH__SECRETS__KEY)")?
    } else {
        return Ok(KeyEncryption::plaintext());
    };
    let mut previous = Vec::new();
    for path in &settings.previous_key_files {
        previous.push(kek_from_file("secrets.previous_key_files", path)?);
    }
    for key in &settings.previous_keys {
        previous
            .push(KeyEncryptionKey::from_base64(key.expose()).context("secrets.previous_keys")?);
    }
    Ok(KeyEncryption::new(current, previous))
}

fn kek_from_file(setting: &str, path: &str) -> anyhow::Result<KeyEncryptionKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                log::warn!("{setting}: {path} is readable by other users; `chmod 600` it");
            }
        }
    }
    let text = Secret::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("{setting}: reading the key-encryption key {path}"))?,
    );
    KeyEncryptionKey::from_base64(text.expose()).with_context(|| format!("{setting}: {path}"))
}

/// Start-up: opens every stored secret with the configured keys (any failure stops
/// the start with a message naming `secrets.key_file`) and, with a KEK configured,
/// seals the ones still stored in plaintext, in one transaction.
pub async fn seal_plaintext_secrets(store: &dyn Store, enc: &KeyEncryption) -> anyhow::Result<()> {
    // Replicas starting together on one database race to seal it: the loser's
    // writes find values that changed and write nothing; it reads them again.
    let mut attempts = 3;
    loop {
        attempts -= 1;
        let (updates, previous) = plaintext_to_seal(store, enc).await?;
        let Some(current) = enc.current_id() else {
            log::warn!(
                "no key-encryption key is configured (secrets.key_file / AUTH__SECRETS__KEY_FILE): \
                 signing keys and the cookie key are stored unencrypted in the database"
            );
            return Ok(());
        };
        if !updates.is_empty() {
            match store.replace_secrets(&updates).await {
                Ok(()) => log::warn!(
                    "encrypted {} stored secret(s) that were in plaintext under key-encryption key {current}; \
                     backups made before now still hold them in plaintext",
                    updates.len()
                ),
                Err(e) if attempts > 0 => {
                    log::info!("stored secrets changed while being sealed ({e}); reading them again");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if previous > 0 {
            log::info!(
                "{previous} stored secret(s) are sealed under a previous key-encryption key; \
                 run `auth-server keys rewrap` to re-seal them under {current}"
            );
        }
        return Ok(());
    }
}

/// The stored secrets that are still in plaintext, re-sealed under the current
/// KEK (none without one), and how many are under a previous KEK. Fails when one
/// does not open with the configured keys.
async fn plaintext_to_seal(
    store: &dyn Store,
    enc: &KeyEncryption,
) -> anyhow::Result<(Vec<SecretUpdate>, usize)> {
    let mut updates = Vec::new();
    let mut previous = 0;
    for (slot, value) in stored_secrets(store).await? {
        let opened = enc.open(&slot, &value).map_err(refuse_start)?;
        match opened.at_rest {
            AtRest::Plaintext if enc.current_id().is_some() => {
                updates.push(resealed(enc, slot, value, &opened)?);
            }
            AtRest::Previous(_) => previous += 1,
            _ => {}
        }
    }
    Ok((updates, previous))
}

fn refuse_start(e: SealError) -> anyhow::Error {
    anyhow::anyhow!("cannot open the stored keys: {e}; refusing to start rather than replace them")
}

/// What `keys rewrap` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Secrets re-sealed under the current KEK (they were plaintext or under a previous one).
    pub resealed: usize,
    /// Secrets that already were under the current KEK.
    pub unchanged: usize,
}

/// Re-seals every stored secret that is not under the current KEK (plaintext, or a
/// previous KEK), in one transaction.
pub async fn rewrap(store: &dyn Store, enc: &KeyEncryption) -> anyhow::Result<Rewrapped> {
    if enc.current_id().is_none() {
        anyhow::bail!(
            "keys rewrap needs the new key-encryption key in secrets.key_file (or secrets.key) \
             and the old one in secrets.previous_key_files"
        );
    }
    let mut updates = Vec::new();
    let mut unchanged = 0;
    for (slot, value) in stored_secrets(store).await? {
        let opened = enc.open(&slot, &value)?;
        if opened.at_rest == AtRest::Current {
            unchanged += 1;
        } else {
            updates.push(resealed(enc, slot, value, &opened)?);
        }
    }
    store.replace_secrets(&updates).await?;
    Ok(Rewrapped {
        resealed: updates.len(),
        unchanged,
    })
}

/// Every stored secret with the row it belongs to.
async fn stored_secrets(store: &dyn Store) -> anyhow::Result<Vec<(SecretSlot, String)>> {
    let mut out: Vec<(SecretSlot, String)> = store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| (SecretSlot::SigningKey(k.kid), k.private_pkcs8_b64))
        .collect();
    if let Some(cookie) = store.find_kv(COOKIE_KEY).await? {
        out.push((SecretSlot::Setting(COOKIE_KEY.into()), cookie));
    }
    Ok(out)
}

fn resealed(
    enc: &KeyEncryption,
    slot: SecretSlot,
    stored: String,
    opened: &Opened,
) -> Result<SecretUpdate, SealError> {
    let replacement = enc.seal(&slot, opened.value.expose())?;
    Ok(SecretUpdate {
        slot,
        stored,
        replacement,
    })
}

/// A freshly generated key as it is stored: its private part sealed.
pub fn seal_key(enc: &KeyEncryption, key: &StoredKey) -> Result<StoredKey, SealError> {
    let slot = SecretSlot::SigningKey(key.kid.clone());
    Ok(StoredKey {
        private_pkcs8_b64: enc.seal(&slot, &key.private_pkcs8_b64)?,
        ..key.clone()
    })
}

/// Stored keys with their private parts opened, for the key ring.
pub fn open_keys(enc: &KeyEncryption, keys: &[StoredKey]) -> Result<Vec<StoredKey>, SealError> {
    keys.iter()
        .map(|key| {
            let slot = SecretSlot::SigningKey(key.kid.clone());
            let opened = enc.open(&slot, &key.private_pkcs8_b64)?;
            Ok(StoredKey {
                private_pkcs8_b64: opened.value.expose().to_string(),
                ..key.clone()
            })
        })
        .collect()
}

/// The cookie jar's master key: the stored one, or a new random one stored sealed.
pub async fn cookie_secret(store: &dyn Store, enc: &KeyEncryption) -> anyhow::Result<Secret> {
    let slot = SecretSlot::Setting(COOKIE_KEY.into());
    let fresh = enc.seal(&slot, &shared::secret::random_token(32))?;
    let stored = store.get_or_init_kv(COOKIE_KEY, &fresh).await?;
    Ok(enc.open(&slot, &stored).map_err(refuse_start)?.value)
}

/// How a stored key's private part is kept, for `auth-server keys list`.
pub fn describe_at_rest(key: &StoredKey) -> String {
    let mut parts = key.private_pkcs8_b64.splitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some(version), Some(kek_id)) => format!("{version}:{kek_id}"),
        _ => "plaintext".into(),
    }
}
