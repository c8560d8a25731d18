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
    let mut env = config::Environment::with_prefix(env_prefix)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true);
    if !list_keys.is_empty() {
        env = env.list_separator(",");
        for key in list_keys {
            env = env.with_list_parse_key(key);
        }
    }
    builder = builder.add_source(env);
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
