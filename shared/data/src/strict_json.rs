//! JSON objects read strictly: a key repeated in one object is refused at any depth.
//!
//! serde_json keeps the last of two equal keys without a word, so a row such as
//! `{"output": "shown to reviewers", "output": "what trains"}` would say one thing to a
//! person reading the file and another to the market. Every object is built here instead,
//! and the first repeated key is reported.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What the visitor says when an object repeats a key; [`duplicate_key`] reads it back.
const DUPLICATE_KEY: &str = "duplicate key ";

/// A JSON value in which no object repeats a key.
pub(crate) struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell a non-finite number, so this is always Some.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                // The key goes out JSON-quoted so any character survives the round trip.
                let quoted = serde_json::to_string(&key).unwrap_or_default();
                return Err(de::Error::custom(format!("{DUPLICATE_KEY}{quoted}")));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// The repeated key a strict parse refused, when that is why `error` happened.
pub(crate) fn duplicate_key(error: &serde_json::Error) -> Option<String> {
    if error.classify() != serde_json::error::Category::Data {
        return None;
    }
    let message = error.to_string();
    let quoted = message.strip_prefix(DUPLICATE_KEY)?;
    // serde_json appends " at line L column C"; the key itself is one JSON string.
    let mut stream = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
    stream.next()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str::<StrictValue>(text).map(|v| v.0)
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": {}}, "d": 18446744073709551615}"#;
        assert_eq!(strict(text).expect("valid"), serde_json::from_str::<Value>(text).expect("valid"));
    }

    #[test]
    fn a_repeated_key_is_reported_at_any_depth() {
        for (text, key) in [
            (r#"{"output": "a", "output": "b"}"#, "output"),
            (r#"{"m": [{"role": "user", "role": "assistant"}]}"#, "role"),
            (r#"{"x": 1, "we\"ird\u0000": 1, "we\"ird\u0000": 2}"#, "we\"ird\0"),
        ] {
            let error = strict(text).expect_err(text);
            assert_eq!(duplicate_key(&error).as_deref(), Some(key), "{text}: {error}");
        }
        let syntax = strict("{\"a\": }").expect_err("syntax");
        assert_eq!(duplicate_key(&syntax), None);
    }
}
