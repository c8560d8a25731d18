//! Demo records for the `protected_data` tool, loaded once from a JSON file: stable per
//! user (not random per call), with a fallback for users without dedicated records.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The copy shipped in `config/`, used when the default path does not exist (e.g. when
/// the binary runs from another working directory).
const EMBEDDED: &str = include_str!("../../config/protected-data.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Personal,
    Financial,
    Admin,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Personal => "personal",
            Category::Financial => "financial",
            Category::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Records {
    #[serde(default)]
    personal: Option<Value>,
    #[serde(default)]
    financial: Option<Value>,
    #[serde(default)]
    admin: Option<Value>,
}

impl Records {
    fn get(&self, category: Category) -> Option<&Value> {
        match category {
            Category::Personal => self.personal.as_ref(),
            Category::Financial => self.financial.as_ref(),
            Category::Admin => self.admin.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DataFile {
    #[serde(default)]
    users: BTreeMap<String, Records>,
    #[serde(default)]
    fallback: Records,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid protected-data file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ProtectedData {
    file: DataFile,
}

impl ProtectedData {
    /// Loads `path`; when it is the default path and does not exist, the embedded copy.
    pub fn load(path: &str) -> Result<Self, DataError> {
        let p = Path::new(path);
        let text = if !p.exists() && path == crate::settings::DEFAULT_PROTECTED_DATA_FILE {
            log::info!("{path} not found; using the built-in demo records");
            EMBEDDED.to_string()
        } else {
            std::fs::read_to_string(p).map_err(|source| DataError::Read {
                path: path.into(),
                source,
            })?
        };
        Self::parse(&text).map_err(|source| DataError::Parse {
            path: path.into(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        Ok(Self {
            file: serde_json::from_str(text)?,
        })
    }

    /// The records of `username` in `category`; the fallback (with `{username}`
    /// substituted) for users without their own.
    pub fn records(&self, username: &str, category: Category) -> Value {
        if let Some(v) = self.file.users.get(username).and_then(|r| r.get(category)) {
            return v.clone();
        }
        match self.file.fallback.get(category) {
            Some(v) => substitute(v, username),
            None => Value::Null,
        }
    }
}

fn substitute(value: &Value, username: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{username}", username)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, username)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, username)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_has_every_category_for_the_demo_users() {
        let data = ProtectedData::parse(EMBEDDED).unwrap();
        for user in ["demo", "admin", "inspector"] {
            for c in [Category::Personal, Category::Financial, Category::Admin] {
                assert!(data.records(user, c).is_object(), "{user} {c:?}");
            }
        }
    }

    #[test]
    fn records_are_stable_and_fall_back() {
        let data = ProtectedData::parse(EMBEDDED).unwrap();
        assert_eq!(
            data.records("demo", Category::Financial),
            data.records("demo", Category::Financial)
        );
        let other = data.records("zoe", Category::Personal);
        assert_eq!(other["email"], "zoe@example.com");
    }
}
