//! Strict reading of the JSON control part.
//!
//! `serde_json`'s own `Value` keeps the last of duplicate keys silently, and derived
//! `Deserialize` reports faults as free text. The reader here keeps every key, so a
//! duplicate is an error (two parsers must never see two different messages in one
//! frame), and each fault is a precise [`DecodeError`].

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::error::{DecodeError, FieldError, NameError};

/// A JSON value that keeps object entries in order and duplicates intact.
#[derive(Debug, Clone)]
pub(crate) enum Json {
    Null,
    Bool,
    Number(Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// Parses a control part: UTF-8 first (so the error says so), then JSON, then
/// "must be an object".
pub(crate) fn parse_object(control: &[u8]) -> Result<Fields, DecodeError> {
    let text = std::str::from_utf8(control).map_err(|e| DecodeError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let value: Json = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    Fields::new(String::new(), value).map_err(|e| match e {
        DecodeError::Field { .. } => DecodeError::NotObject,
        other => other,
    })
}

/// The fields of one JSON object, taken one by one; whatever is left at
/// [`Fields::finish`] is an unknown field.
pub(crate) struct Fields {
    prefix: String,
    entries: Vec<(String, Json)>,
}

impl Fields {
    fn new(prefix: String, value: Json) -> Result<Fields, DecodeError> {
        let Json::Object(entries) = value else {
            let field = prefix.trim_end_matches('.').to_owned();
            return Err(DecodeError::field(field, FieldError::WrongType("object")));
        };
        // A set, not a pairwise scan: a frame of 100k distinct keys must cost
        // milliseconds, not the minutes a quadratic check would let a peer demand.
        let mut seen = HashSet::with_capacity(entries.len());
        for (key, _) in &entries {
            if !seen.insert(key.as_str()) {
                return Err(DecodeError::DuplicateField(format!("{prefix}{key}")));
            }
        }
        Ok(Fields { prefix, entries })
    }

    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn take(&mut self, name: &str) -> Option<Json> {
        let at = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.swap_remove(at).1)
    }

    fn required(&mut self, name: &str) -> Result<Json, DecodeError> {
        self.take(name)
            .ok_or_else(|| DecodeError::field(self.path(name), FieldError::Missing))
    }

    fn wrong(&self, name: &str, expected: &'static str) -> DecodeError {
        DecodeError::field(self.path(name), FieldError::WrongType(expected))
    }

    pub(crate) fn u64(&mut self, name: &str) -> Result<u64, DecodeError> {
        match self.required(name)? {
            Json::Number(n) => n
                .as_u64()
                .ok_or_else(|| self.wrong(name, "a non-negative integer")),
            _ => Err(self.wrong(name, "a non-negative integer")),
        }
    }

    pub(crate) fn u32(&mut self, name: &str) -> Result<u32, DecodeError> {
        let v = self.u64(name)?;
        u32::try_from(v).map_err(|_| {
            DecodeError::field(
                self.path(name),
                FieldError::OutOfRange(format!("{v} exceeds {}", u32::MAX)),
            )
        })
    }

    pub(crate) fn i64(&mut self, name: &str) -> Result<i64, DecodeError> {
        match self.required(name)? {
            Json::Number(n) => n.as_i64().ok_or_else(|| self.wrong(name, "an integer")),
            _ => Err(self.wrong(name, "an integer")),
        }
    }

    pub(crate) fn opt_i32(&mut self, name: &str) -> Result<Option<i32>, DecodeError> {
        match self.take(name) {
            None => Ok(None),
            Some(Json::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a 32-bit integer")),
            Some(_) => Err(self.wrong(name, "a 32-bit integer")),
        }
    }

    pub(crate) fn string(&mut self, name: &str) -> Result<String, DecodeError> {
        match self.required(name)? {
            Json::String(s) => Ok(s),
            _ => Err(self.wrong(name, "a string")),
        }
    }

    pub(crate) fn opt_string(&mut self, name: &str) -> Result<Option<String>, DecodeError> {
        match self.take(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    /// A string that must be a valid name (see [`crate::validate_name`]).
    pub(crate) fn name(&mut self, name: &str, max: u32) -> Result<String, DecodeError> {
        let s = self.string(name)?;
        crate::validate_name(&s, max).map_err(|e| DecodeError::name(self.path(name), e))?;
        Ok(s)
    }

    /// A string that must be a valid absolute path (see [`crate::validate_path`]).
    pub(crate) fn path_value(&mut self, name: &str, max: u32) -> Result<String, DecodeError> {
        let s = self.string(name)?;
        crate::validate_path(&s, max).map_err(|e| DecodeError::name(self.path(name), e))?;
        Ok(s)
    }

    pub(crate) fn object(&mut self, name: &str) -> Result<Fields, DecodeError> {
        let value = self.required(name)?;
        Fields::new(format!("{}.", self.path(name)), value)
    }

    /// An array whose items are read by `item` (given the item's field path).
    pub(crate) fn array<T>(
        &mut self,
        name: &str,
        mut item: impl FnMut(Json, String) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        match self.required(name)? {
            Json::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| item(v, format!("{}[{i}]", self.path(name))))
                .collect(),
            _ => Err(self.wrong(name, "an array")),
        }
    }

    /// Ends reading: any field not taken is unknown to the spec.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.entries.into_iter().next() {
            None => Ok(()),
            Some((key, _)) => Err(DecodeError::UnknownField(format!("{}{key}", self.prefix))),
        }
    }
}

/// Reads an array item that must be an object.
pub(crate) fn item_object(value: Json, path: &str) -> Result<Fields, DecodeError> {
    Fields::new(format!("{path}."), value)
}

/// Reads an array item that must be a string.
pub(crate) fn item_string(value: Json, path: String) -> Result<String, DecodeError> {
    match value {
        Json::String(s) => Ok(s),
        _ => Err(DecodeError::field(path, FieldError::WrongType("a string"))),
    }
}

/// Reads an array item that must be a valid name.
pub(crate) fn item_name(value: Json, path: String, max: u32) -> Result<String, DecodeError> {
    let s = item_string(value, path.clone())?;
    crate::validate_name(&s, max).map_err(|e: NameError| DecodeError::name(path, e))?;
    Ok(s)
}

/// Writes one JSON object with keys in the order given: the canonical form that
/// encoders emit and that the spec's test vectors use (compact, no whitespace).
pub(crate) struct ObjWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjWriter<'a> {
    pub(crate) fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjWriter { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub(crate) fn num(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        let out = self.key(key);
        out.extend_from_slice(value.to_string().as_bytes());
        self
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        write_str(out, value);
        self
    }

    /// A nested value written by `f`.
    pub(crate) fn with(&mut self, key: &str, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        f(self.key(key));
        self
    }

    pub(crate) fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// Writes a JSON array whose items are written by `item`.
pub(crate) fn write_array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut item: impl FnMut(&mut Vec<u8>, &T),
) {
    out.push(b'[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, v);
    }
    out.push(b']');
}

/// Writes a JSON string: `"` and `\` escaped, control characters as `\u00XX`
/// (with the short forms for `\b \f \n \r \t`), everything else as UTF-8.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}
