//! Canonical JSON (RFC 8785, JCS) for Guanxi's integer-only data model, and the
//! strict parser in front of it.
//!
//! The parser accepts RFC 8259 JSON and refuses what the wire must never carry:
//! duplicate object keys, lone UTF-16 surrogates (escaped or not), numbers whose
//! value is not an integer or lies outside ±(2^53−1), nesting deeper than
//! [`MAX_DEPTH`], and anything after the top-level value. An integral number
//! written with a fraction or exponent (`56.0`, `1E3`, `-0`) is accepted and
//! means that integer, exactly as JCS treats it; its canonical form is the
//! plain decimal. Every error carries the byte offset, line and column, and the
//! JSON path of the value being read.
//!
//! The writer emits JCS: no whitespace, object members sorted by the UTF-16
//! code units of their names, strings escaped as ECMAScript's `JSON.stringify`
//! does, integers in plain decimal.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

/// Largest magnitude an integer on the wire may have: 2^53 − 1, the range in
/// which every JSON implementation (including IEEE-754 doubles) is exact.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Deepest nesting of arrays and objects the parser accepts.
pub const MAX_DEPTH: usize = 64;

/// What was wrong with a JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("the text is not valid UTF-8")]
    InvalidUtf8,
    #[error("the text ends in the middle of a value")]
    UnexpectedEnd,
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    #[error("lone UTF-16 surrogate in a string")]
    LoneSurrogate,
    #[error("unescaped control character in a string")]
    ControlCharacter,
    #[error("invalid escape sequence in a string")]
    InvalidEscape,
    #[error("malformed number")]
    MalformedNumber,
    #[error(
        "number is not an integer (the wire carries integers only; money is integer minor units)"
    )]
    NotAnInteger,
    #[error("integer outside ±(2^53−1)")]
    OutOfRange,
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("data after the end of the JSON value")]
    TrailingData,
}

/// A JSON syntax or strictness error with its place in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at line {line}, column {column} (byte {offset}, path {path})")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Byte offset from the start of the text.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// JSON path of the value being read, like `$.body.lines[2].sku`.
    pub path: String,
}

/// Why a value cannot be written in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("number at {path} is not an integer")]
    NotAnInteger { path: String },
    #[error("integer at {path} is outside ±(2^53−1)")]
    OutOfRange { path: String },
    #[error("value cannot be represented as JSON: {0}")]
    Unrepresentable(String),
}

/// Why bytes could not be decoded into a typed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Syntax(#[from] ParseError),
    #[error("field {path}: {message}")]
    Field { path: String, message: String },
}

impl DecodeError {
    /// The JSON path the error is about.
    pub fn path(&self) -> &str {
        match self {
            DecodeError::Syntax(e) => &e.path,
            DecodeError::Field { path, .. } => path,
        }
    }
}

/// Parses `bytes` strictly into a JSON value (see the module doc).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ParseError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.valid_up_to();
            // The valid prefix is UTF-8, so line and column can be counted in it.
            let prefix = std::str::from_utf8(&bytes[..offset]).unwrap_or("");
            let (line, column) = line_column(prefix, offset);
            return Err(ParseError {
                kind: ParseErrorKind::InvalidUtf8,
                offset,
                line,
                column,
                path: "$".into(),
            });
        }
    };
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        path: Vec::new(),
    };
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error(ParseErrorKind::TrailingData));
    }
    Ok(value)
}

/// Writes `value` in canonical form (RFC 8785).
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    let mut path = String::from("$");
    write_value(value, &mut out, &mut path)?;
    Ok(out)
}

/// Serializes a typed value to canonical bytes.
pub fn to_canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let v =
        serde_json::to_value(value).map_err(|e| CanonicalError::Unrepresentable(e.to_string()))?;
    canonicalize(&v)
}

/// Parses bytes strictly and decodes them into `T`, naming the field on error.
pub fn from_slice_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value = parse_strict(bytes)?;
    from_value(value)
}

/// Decodes an already strictly parsed value into `T`, naming the field on error.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// Like [`from_value`], borrowing the value (no copy of the whole tree).
pub fn from_value_ref<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    let raw = e.path().to_string();
    let path = if raw == "." || raw.is_empty() {
        "$".to_string()
    } else {
        format!("$.{raw}")
    };
    DecodeError::Field {
        path,
        message: e.into_inner().to_string(),
    }
}

/// Deserializes an `Option` whose member must be present (null allowed):
/// Guanxi's wire has one spelling per value, so "absent" is never "null".
pub fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut end = offset;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

enum Seg {
    Key(String),
    Index(usize),
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
}

impl Parser<'_> {
    fn error(&self, kind: ParseErrorKind) -> ParseError {
        self.error_at(kind, self.pos)
    }

    fn error_at(&self, kind: ParseErrorKind, offset: usize) -> ParseError {
        let (line, column) = line_column(self.text, offset);
        ParseError {
            kind,
            offset,
            line,
            column,
            path: render_path(&self.path),
        }
    }

    fn unexpected(&self) -> ParseError {
        match self.text[self.pos.min(self.text.len())..].chars().next() {
            Some(c) => self.error(ParseErrorKind::UnexpectedChar(c)),
            None => self.error(ParseErrorKind::UnexpectedEnd),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, lit: &str, value: Value) -> Result<Value, ParseError> {
        for expected in lit.bytes() {
            if self.peek() != Some(expected) {
                return Err(self.unexpected());
            }
            self.pos += 1;
        }
        Ok(value)
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        match self.peek() {
            None => Err(self.error(ParseErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.expect_literal("true", Value::Bool(true)),
            Some(b'f') => self.expect_literal("false", Value::Bool(false)),
            Some(b'n') => self.expect_literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.unexpected()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(ParseErrorKind::TooDeep));
        }
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected());
            }
            let key_start = self.pos;
            let key = self.string()?;
            if map.contains_key(&key) {
                return Err(self.error_at(ParseErrorKind::DuplicateKey(key), key_start));
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.unexpected());
            }
            self.pos += 1;
            self.skip_ws();
            self.path.push(Seg::Key(key.clone()));
            let v = self.value(depth)?;
            self.path.pop();
            map.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(ParseErrorKind::TooDeep));
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            self.path.push(Seg::Index(items.len()));
            let v = self.value(depth)?;
            self.path.pop();
            items.push(v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, ParseError> {
        let start = self.pos;
        let digits = self
            .bytes
            .get(start..start + 4)
            .ok_or_else(|| self.error(ParseErrorKind::UnexpectedEnd))?;
        let mut v: u16 = 0;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error_at(ParseErrorKind::InvalidEscape, start))?;
            v = (v << 4) | n as u16;
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Unescaped text is valid UTF-8 (checked up front) and cannot hold a
            // lone surrogate: UTF-8 cannot encode one.
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                None => return Err(self.error(ParseErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc_start = self.pos;
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let unit = self.hex4()?;
                            let c = self.unicode_escape(unit, esc_start)?;
                            out.push(c);
                            continue;
                        }
                        None => return Err(self.error(ParseErrorKind::UnexpectedEnd)),
                        Some(_) => {
                            return Err(self.error_at(ParseErrorKind::InvalidEscape, esc_start));
                        }
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.error(ParseErrorKind::ControlCharacter)),
            }
        }
    }

    /// Completes a `\uXXXX` escape whose code unit is `unit`, reading the low
    /// half of a surrogate pair when needed.
    fn unicode_escape(&mut self, unit: u16, esc_start: usize) -> Result<char, ParseError> {
        match unit {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error_at(ParseErrorKind::LoneSurrogate, esc_start));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error_at(ParseErrorKind::LoneSurrogate, esc_start));
                }
                let code = 0x10000 + (((unit as u32) - 0xD800) << 10) + ((low as u32) - 0xDC00);
                char::from_u32(code)
                    .ok_or_else(|| self.error_at(ParseErrorKind::LoneSurrogate, esc_start))
            }
            0xDC00..=0xDFFF => Err(self.error_at(ParseErrorKind::LoneSurrogate, esc_start)),
            _ => char::from_u32(unit as u32)
                .ok_or_else(|| self.error_at(ParseErrorKind::InvalidEscape, esc_start)),
        }
    }

    fn digits(&mut self) -> &str {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_part = self.digits().to_string();
        if int_part.is_empty() || (int_part.len() > 1 && int_part.starts_with('0')) {
            return Err(self.error_at(ParseErrorKind::MalformedNumber, start));
        }
        let mut frac_part = String::new();
        if self.peek() == Some(b'.') {
            self.pos += 1;
            frac_part = self.digits().to_string();
            if frac_part.is_empty() {
                return Err(self.error_at(ParseErrorKind::MalformedNumber, start));
            }
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let exp_negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let exp_digits = self.digits();
            if exp_digits.is_empty() {
                return Err(self.error_at(ParseErrorKind::MalformedNumber, start));
            }
            // Saturate: any exponent this large is out of range or fractional anyway.
            let magnitude = exp_digits
                .bytes()
                .fold(0i64, |acc, d| {
                    acc.saturating_mul(10).saturating_add((d - b'0') as i64)
                })
                .min(1 << 40);
            exponent = if exp_negative { -magnitude } else { magnitude };
        }
        // value = digits × 10^(exponent − len(frac)), made exact without floats.
        let mut digits: String = format!("{int_part}{frac_part}");
        let mut exp = exponent - frac_part.len() as i64;
        while digits.len() > 1 && digits.ends_with('0') {
            digits.pop();
            exp += 1;
        }
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Ok(Value::Number(Number::from(0)));
        }
        if exp < 0 {
            return Err(self.error_at(ParseErrorKind::NotAnInteger, start));
        }
        if digits.len() as i64 + exp > 16 {
            return Err(self.error_at(ParseErrorKind::OutOfRange, start));
        }
        let mut magnitude: i64 = 0;
        for d in digits.bytes() {
            magnitude = magnitude * 10 + (d - b'0') as i64;
        }
        for _ in 0..exp {
            magnitude *= 10;
        }
        if magnitude > MAX_SAFE_INTEGER {
            return Err(self.error_at(ParseErrorKind::OutOfRange, start));
        }
        Ok(Value::Number(Number::from(if negative {
            -magnitude
        } else {
            magnitude
        })))
    }
}

fn render_path(path: &[Seg]) -> String {
    let mut s = String::from("$");
    for seg in path {
        match seg {
            Seg::Key(k) => push_key(&mut s, k),
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn push_key(path: &mut String, key: &str) {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str(&format!("[{key:?}]"));
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let i = if let Some(i) = n.as_i64() {
                i
            } else if n.as_u64().is_some() {
                return Err(CanonicalError::OutOfRange { path: path.clone() });
            } else {
                return Err(CanonicalError::NotAnInteger { path: path.clone() });
            };
            if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) {
                return Err(CanonicalError::OutOfRange { path: path.clone() });
            }
            out.extend_from_slice(i.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                let len = path.len();
                push_key(path, key);
                write_value(&map[key], out, path)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Writes a string as ECMAScript `JSON.stringify` does (RFC 8785 §3.2.2.2).
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}
