//! `requestState` of the stateless era's `InputRequiredResult` (SEP-2322): the fixture
//! keeps nothing between the rounds of a tool call, so the round and its data travel with
//! the client, sealed with HMAC-SHA256 under a per-process key, bound to one tool and
//! expiring.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rmcp::model::ErrorData as McpError;
use serde_json::{json, Value};

/// Lifetime of a sealed `requestState`.
const REQUEST_STATE_TTL_SECS: u64 = 600;

/// Seals and opens `requestState` values with one HMAC-SHA256 key.
pub(crate) struct RequestStateSealer {
    key: hmac::Key,
}

impl RequestStateSealer {
    /// A sealer with a fresh random 32-byte key.
    pub(crate) fn random() -> Self {
        let mut key_bytes = [0u8; 32];
        rand::fill(&mut key_bytes[..]);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key_bytes),
        }
    }

    /// Seals `requestState`: base64url(JSON payload) "." base64url(HMAC-SHA256).
    pub(crate) fn seal(&self, tool: &str, round: u32, data: Value) -> Result<String, McpError> {
        let payload = json!({
            "tool": tool,
            "round": round,
            "data": data,
            "exp": unix_now() + REQUEST_STATE_TTL_SECS,
        });
        let payload = serde_json::to_vec(&payload)
            .map_err(|e| McpError::internal_error(format!("requestState encoding: {e}"), None))?;
        let mac = hmac::sign(&self.key, &payload);
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac)
        ))
    }

    /// Opens a sealed `requestState` for `tool`: integrity, tool binding and expiry.
    /// Returns the round and the data it carried.
    pub(crate) fn open(&self, tool: &str, sealed: &str) -> Result<(u32, Value), McpError> {
        let rejected = || {
            McpError::invalid_params(
                "requestState failed its integrity check",
                Some(json!({ "reason": "tampered, expired or foreign requestState" })),
            )
        };
        let (payload, mac) = sealed.split_once('.').ok_or_else(rejected)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| rejected())?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| rejected())?;
        // `verify` compares the tags in constant time.
        hmac::verify(&self.key, &payload, &mac).map_err(|_| rejected())?;
        let payload: Value = serde_json::from_slice(&payload).map_err(|_| rejected())?;
        let exp = payload.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if payload.get("tool").and_then(Value::as_str) != Some(tool) || exp < unix_now() {
            return Err(rejected());
        }
        let round = payload
            .get("round")
            .and_then(Value::as_u64)
            .and_then(|r| u32::try_from(r).ok())
            .ok_or_else(rejected)?;
        Ok((round, payload.get("data").cloned().unwrap_or(Value::Null)))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn request_state_round_trips_and_rejects_tampering() {
        let server = RequestStateSealer::random();
        let sealed = server.seal("tool_a", 2, json!({"name": "Alice"})).unwrap();
        let (round, data) = server.open("tool_a", &sealed).unwrap();
        assert_eq!(round, 2);
        assert_eq!(data["name"], "Alice");

        let tampered = format!("{sealed}-TAMPERED");
        assert_eq!(server.open("tool_a", &tampered).unwrap_err().code.0, -32602);
        assert!(server.open("tool_b", &sealed).is_err(), "bound to its tool");
        assert!(server.open("tool_a", "garbage").is_err());
        assert!(server.open("tool_a", "").is_err());
        let (payload, mac) = sealed.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"tool":"tool_a","round":9,"data":null,"exp":99999999999}"#);
        assert!(server
            .open("tool_a", &format!("{forged_payload}.{mac}"))
            .is_err());
        assert!(server
            .open(
                "tool_a",
                &format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]))
            )
            .is_err());
    }

    #[test]
    fn the_sealing_mac_is_hmac_sha256_with_a_32_byte_key() {
        // HMAC-SHA256 with a 32-byte key of 0x0b and "Hi There"; the expected value was
        // computed independently with Python's `hmac` module.
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[0x0bu8; 32]);
        let mac = hmac::sign(&key, b"Hi There");
        assert_eq!(
            mac.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
    }
}
