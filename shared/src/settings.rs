//! Layered, typed configuration: compiled-in defaults (the `Default` of the settings
//! type), then a TOML file, then environment variables with a prefix and `__` as the
//! nesting separator (`AUTH__SERVER__LISTEN`, `MCP__AUTH__ISSUER`).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path}: {source}")]
    File {
        path: String,
        source: config::ConfigError,
    },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Loads `T` from defaults, an optional TOML file and `PREFIX__...` env variables.
/// `list_keys` names the dotted keys (`auth.resources`) whose env value is a
/// comma-separated list.
/// A file that was named but does not exist is an error; silently ignoring it would
/// start a server with the wrong issuer.
pub fn load<T>(
    file: Option<&Path>,
    env_prefix: &str,
    list_keys: &[&str],
) -> Result<T, SettingsError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    load_with_env(file, env_prefix, list_keys, std::env::vars())
}

/// [`load`] with the given environment instead of the process's (for tests, which
/// must not change the environment other tests read).
pub fn load_with_env<T>(
    file: Option<&Path>,
    env_prefix: &str,
    list_keys: &[&str],
    vars: impl Iterator<Item = (String, String)>,
) -> Result<T, SettingsError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    let defaults = config::Config::try_from(&T::default())
        .map_err(|e| SettingsError::Invalid(format!("defaults: {e}")))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        if !path.exists() {
            return Err(SettingsError::Invalid(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    // Variables that name an element of an array of tables (`AUTH__IDENTITY_PROVIDERS__0__
    // CLIENT_SECRET`) are applied as overrides of that element (`identity_providers[0].
    // client_secret`); the environment source would turn the array into a table.
    let (plain, indexed) = split_indexed_env(env_prefix, vars);
    let mut env = config::Environment::with_prefix(env_prefix)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(plain.into_iter().collect()));
    if !list_keys.is_empty() {
        env = env.list_separator(",");
        for key in list_keys {
            env = env.with_list_parse_key(key);
        }
    }
    builder = builder.add_source(env);
    for (key, value) in indexed {
        builder = builder
            .set_override(key.as_str(), value)
            .map_err(|e| SettingsError::Invalid(format!("environment variable for {key}: {e}")))?;
    }
    let built = builder.build().map_err(|e| SettingsError::File {
        path: file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<env>".into()),
        source: e,
    })?;
    built
        .try_deserialize()
        .map_err(|e| SettingsError::Invalid(e.to_string()))
}

/// Environment variables (name or config path, value).
type Vars = Vec<(String, String)>;

/// Splits the `PREFIX__...` variables into those the environment source reads as
/// they are, and those with an all-digit segment: an array index, returned as a
/// config path (`identity_providers[0].client_secret`) with the value.
fn split_indexed_env(prefix: &str, vars: impl Iterator<Item = (String, String)>) -> (Vars, Vars) {
    let head = format!("{prefix}__");
    let mut plain = Vec::new();
    let mut indexed = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(&head) else {
            continue;
        };
        let segments: Vec<&str> = rest.split("__").collect();
        if !segments
            .iter()
            .any(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        {
            plain.push((name, value));
            continue;
        }
        let mut path = String::new();
        for s in segments {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                path.push_str(&format!("[{s}]"));
            } else {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&s.to_lowercase());
            }
        }
        indexed.push((path, value));
    }
    (plain, indexed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_indices_in_variable_names_become_config_paths() {
        let vars = [
            ("AUTH__IDENTITY_PROVIDERS__0__CLIENT_SECRET", "s0"),
            ("AUTH__IDENTITY_PROVIDERS__12__ACCESS__ADMIN_GROUPS", "a"),
            ("AUTH__SERVER__LISTEN", "127.0.0.1:1"),
            ("OTHER__X__0", "ignored"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let (plain, indexed) = split_indexed_env("AUTH", vars.into_iter());
        assert_eq!(
            plain,
            vec![("AUTH__SERVER__LISTEN".into(), "127.0.0.1:1".into())]
        );
        assert_eq!(
            indexed,
            vec![
                ("identity_providers[0].client_secret".into(), "s0".into()),
                (
                    "identity_providers[12].access.admin_groups".into(),
                    "a".into()
                ),
            ]
        );
    }
}
