//! What the bridge reads from a POST body before rmcp sees it, parsed once: the scope
//! policy's inputs (method, tool name and arguments of every message) and what the
//! direct path needs to answer a plain `tools/call` itself (see [`crate::direct`]).
//!
//! Strings are borrowed from the body unless the JSON escapes them; the arguments are
//! parsed into the map a tool receives. Nothing here fails on odd shapes (a
//! non-string `method`, `params` that is an array, unknown or duplicate keys): such a
//! message is recorded as it is, the policy reads it the way a generic JSON value
//! reads (the last of duplicate keys wins), and it is never answered directly. Only
//! JSON syntax errors fail.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use rmcp::model::JsonObject;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// A JSON POST body.
pub enum Body<'a> {
    /// One JSON-RPC message; a JSON value that is not an object reads as a message
    /// with nothing in it.
    Single(Message<'a>),
    /// A JSON array: a JSON-RPC batch, which rmcp does not speak.
    Batch(Vec<Message<'a>>),
}

impl<'a> Body<'a> {
    pub fn parse(body: &'a [u8]) -> serde_json::Result<Body<'a>> {
        serde_json::from_slice(body)
    }

    pub fn messages(&self) -> &[Message<'a>] {
        match self {
            Body::Single(message) => std::slice::from_ref(message),
            Body::Batch(messages) => messages,
        }
    }
}

/// One JSON-RPC message.
#[derive(Debug, Default)]
pub struct Message<'a> {
    /// `jsonrpc`, when a string.
    pub jsonrpc: Option<Cow<'a, str>>,
    /// `id` as sent (`Some(Value::Null)` for `"id": null`).
    pub id: Option<Value>,
    /// `method`, when a string.
    pub method: Option<Cow<'a, str>>,
    pub params: Params<'a>,
    /// The object had no key besides `jsonrpc`, `id`, `method` and `params`, and
    /// none of those twice.
    pub plain: bool,
}

impl Message<'_> {
    /// The id for an error answer: null unless a string or a number.
    pub fn error_id(&self) -> Value {
        self.id
            .as_ref()
            .filter(|id| id.is_string() || id.is_number())
            .cloned()
            .unwrap_or(Value::Null)
    }
}

#[derive(Debug, Default)]
pub enum Params<'a> {
    #[default]
    Absent,
    Null,
    /// An array, a string, a number or a boolean.
    NotObject,
    Object(CallParams<'a>),
}

/// A `params` object, read for what `tools/call` carries.
#[derive(Debug, Default)]
pub struct CallParams<'a> {
    /// `name`, when a string.
    pub name: Option<Cow<'a, str>>,
    pub arguments: Arguments,
    /// No key besides `name` and `arguments`, and neither twice.
    pub plain: bool,
}

#[derive(Debug, Default)]
pub enum Arguments {
    /// Absent or `null`.
    #[default]
    Absent,
    Object(JsonObject),
    NotObject,
}

/// A string value (borrowed unless escaped); `None` for any other JSON value.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

/// A type read from any JSON value, one hook per shape. By default maps and arrays
/// are skipped, and every shape but `null` reads as [`other`](Self::other).
trait FromAnyJson<'de>: Default {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::other())
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::other())
    }
    fn from_str(_: Cow<'de, str>) -> Self {
        Self::other()
    }
    fn null() -> Self {
        Self::default()
    }
    /// A number or a boolean (and, unless overridden, a string, a map or an array).
    fn other() -> Self {
        Self::default()
    }
}

struct AnyJsonVisitor<T>(PhantomData<T>);

impl<'de, T: FromAnyJson<'de>> Visitor<'de> for AnyJsonVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::from_seq(seq)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<T, E> {
        Ok(T::from_str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<T, E> {
        Ok(T::from_str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<T, E> {
        Ok(T::from_str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::null())
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::other())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::other())
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::other())
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::other())
    }
}

/// `Deserialize` through [`FromAnyJson`].
macro_rules! deserialize_any_json {
    ($($ty:ident),*) => {$(
        impl<'de> Deserialize<'de> for $ty<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(AnyJsonVisitor(PhantomData))
            }
        }
    )*};
}

deserialize_any_json!(Text, Message, Params, Body);

impl<'de> FromAnyJson<'de> for Text<'de> {
    fn from_str(s: Cow<'de, str>) -> Self {
        Text(Some(s))
    }
}

/// Reads a JSON object: the value of each of `keys` goes to `read` (with the key's
/// index), other keys are skipped. `Ok(true)` when there was no other key and none
/// twice (of duplicate keys the last wins, as in a JSON value).
fn read_object<'de, A: MapAccess<'de>, const N: usize>(
    mut map: A,
    keys: [&str; N],
    mut read: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<bool, A::Error> {
    let mut plain = true;
    let mut seen = [false; N];
    while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
        match key.and_then(|key| keys.iter().position(|known| *known == key)) {
            Some(index) => {
                plain &= !std::mem::replace(&mut seen[index], true);
                read(index, &mut map)?;
            }
            None => {
                plain = false;
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(plain)
}

impl<'de> FromAnyJson<'de> for Message<'de> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let mut message = Message::default();
        let keys = ["jsonrpc", "id", "method", "params"];
        message.plain = read_object(map, keys, |index, map| {
            match index {
                0 => message.jsonrpc = map.next_value::<Text<'de>>()?.0,
                1 => message.id = Some(map.next_value()?),
                2 => message.method = map.next_value::<Text<'de>>()?.0,
                _ => message.params = map.next_value()?,
            }
            Ok(())
        })?;
        Ok(message)
    }
}

impl<'de> FromAnyJson<'de> for Params<'de> {
    fn other() -> Self {
        Params::NotObject
    }
    fn null() -> Self {
        Params::Null
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let mut params = CallParams::default();
        params.plain = read_object(map, ["name", "arguments"], |index, map| {
            match index {
                0 => params.name = map.next_value::<Text<'de>>()?.0,
                _ => {
                    params.arguments = match map.next_value::<Value>()? {
                        Value::Null => Arguments::Absent,
                        Value::Object(arguments) => Arguments::Object(arguments),
                        _ => Arguments::NotObject,
                    }
                }
            }
            Ok(())
        })?;
        Ok(Params::Object(params))
    }
}

impl Default for Body<'_> {
    fn default() -> Self {
        Body::Single(Message::default())
    }
}

impl<'de> FromAnyJson<'de> for Body<'de> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        Message::from_map(map).map(Body::Single)
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut messages = Vec::new();
        while let Some(message) = seq.next_element()? {
            messages.push(message);
        }
        Ok(Body::Batch(messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Message<'_> {
        match Body::parse(body.as_bytes()) {
            Ok(Body::Single(message)) => message,
            Ok(Body::Batch(_)) => panic!("a batch: {body}"),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    fn call(message: &Message) -> Option<(String, Option<String>)> {
        let Params::Object(p) = &message.params else {
            return None;
        };
        let category = match &p.arguments {
            Arguments::Object(a) => crate::policy::category_argument(Some(a)).map(str::to_string),
            _ => None,
        };
        Some((p.name.as_deref().unwrap_or_default().to_string(), category))
    }

    #[test]
    fn plain_messages_are_read_without_copies() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"admin","x":[1,{"y":null}]}}}"#,
        );
        assert!(m.plain);
        assert!(matches!(m.method, Some(Cow::Borrowed("tools/call"))));
        assert!(matches!(m.jsonrpc, Some(Cow::Borrowed("2.0"))));
        assert_eq!(m.id, Some(Value::from(1)));
        assert_eq!(
            call(&m),
            Some(("protected_data".to_string(), Some("admin".to_string())))
        );
        let Params::Object(p) = &m.params else {
            panic!("params")
        };
        assert!(p.plain);
        assert!(matches!(p.name, Some(Cow::Borrowed("protected_data"))));
    }

    #[test]
    fn odd_spellings_read_as_a_json_value_reads_them() {
        // Escapes are decoded (and owned).
        let m = single(
            r#"{"method":"tools\/call","params":{"name":"user_\u0070rofile","arguments":{"category":"adm\u0069n"}}}"#,
        );
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert!(matches!(m.method, Some(Cow::Owned(_))));
        assert_eq!(
            call(&m),
            Some(("user_profile".to_string(), Some("admin".to_string())))
        );
        // The last of duplicate keys wins, and the message is not plain.
        let m = single(
            r#"{"method":"tools/call","params":{"name":"hello_world","name":"user_profile","arguments":{"category":"personal","category":"admin"}}}"#,
        );
        assert_eq!(
            call(&m),
            Some(("user_profile".to_string(), Some("admin".to_string())))
        );
        let Params::Object(p) = &m.params else {
            panic!("params")
        };
        assert!(!p.plain);
        let m = single(r#"{"method":"tools/call","method":"ping"}"#);
        assert_eq!(m.method.as_deref(), Some("ping"));
        assert!(!m.plain);
        // Unknown keys are skipped and noted.
        let m = single(r#"{"method":"tools/call","params":{"name":"x","_meta":{"a":1}},"x":1}"#);
        assert!(!m.plain);
        let Params::Object(p) = &m.params else {
            panic!("params")
        };
        assert!(!p.plain);
        // Values of other types.
        let m = single(r#"{"method":5,"id":null,"params":["user_profile"]}"#);
        assert_eq!(m.method, None);
        assert_eq!(m.id, Some(Value::Null));
        assert!(matches!(m.params, Params::NotObject));
        let m = single(r#"{"method":"tools/call","params":null}"#);
        assert!(matches!(m.params, Params::Null));
        let m = single(r#"{"method":"tools/call","params":{"name":7,"arguments":["admin"]}}"#);
        let Params::Object(p) = &m.params else {
            panic!("params")
        };
        assert_eq!(p.name, None);
        assert!(matches!(p.arguments, Arguments::NotObject));
        let m = single(r#"{"params":{"arguments":null,"name":"hello_world"}}"#);
        assert_eq!(call(&m), Some(("hello_world".to_string(), None)));
        for scalar in ["42", "null", "\"x\"", "true"] {
            let m = single(scalar);
            assert!(m.method.is_none() && matches!(m.params, Params::Absent));
        }
    }

    #[test]
    fn batches_and_errors() {
        let Ok(Body::Batch(messages)) = Body::parse(
            br#"[{"method":"tools/list"},42,[1],{"method":"tools/call","params":{"name":"a"}}]"#,
        ) else {
            panic!("a batch");
        };
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].method.as_deref(), Some("tools/list"));
        assert!(messages[1].method.is_none() && messages[2].method.is_none());
        assert_eq!(call(&messages[3]), Some(("a".to_string(), None)));
        for bad in ["{not json", r#"{"method":"ping"} x"#, ""] {
            assert!(Body::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_ids_are_strings_or_numbers() {
        assert_eq!(single(r#"{"id":"a"}"#).error_id(), Value::from("a"));
        assert_eq!(single(r#"{"id":1.5}"#).error_id(), Value::from(1.5));
        assert_eq!(single(r#"{"id":[1]}"#).error_id(), Value::Null);
        assert_eq!(single(r#"{}"#).error_id(), Value::Null);
    }
}
