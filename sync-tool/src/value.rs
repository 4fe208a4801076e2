//! The one type mapping (column value → JSON) used by the dump and the stream of both
//! drivers. See README.md "Type mapping".

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use serde_json::{Map, Number, Value};

/// How a column's value is mapped to JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// Integer types: JSON number (exact, i64/u64).
    Int,
    /// float/double: JSON number; NaN and infinities as strings.
    Float,
    /// numeric/decimal/money: exact string.
    Decimal,
    /// bytea/blob: base64 string.
    Bytes,
    /// json/jsonb: embedded JSON.
    Json,
    /// timestamp without time zone: `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
    Timestamp,
    /// timestamp with time zone: RFC 3339 in UTC (`...Z`).
    TimestampTz,
    /// Everything else (text, varchar, uuid, date, time, interval (ISO 8601), enum labels, ...).
    Text,
    /// PostgreSQL array of the element kind; `delim` is the element delimiter.
    Array(Box<Kind>, u8),
}

pub fn float_value(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// Converts PostgreSQL's text output (session settings DateStyle=ISO, TimeZone=UTC,
/// IntervalStyle=iso_8601, extra_float_digits=3, bytea_output=hex) to JSON.
pub fn pg_text(kind: &Kind, s: &str) -> Result<Value> {
    Ok(match kind {
        Kind::Bool => match s {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => bail!("invalid boolean {s:?}"),
        },
        Kind::Int => {
            if let Ok(i) = s.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = s.parse::<u64>() {
                Value::from(u)
            } else {
                bail!("invalid integer {s:?}")
            }
        }
        Kind::Float => match s {
            "NaN" => Value::String("NaN".into()),
            "Infinity" => Value::String("Infinity".into()),
            "-Infinity" => Value::String("-Infinity".into()),
            _ => float_value(
                s.parse::<f64>()
                    .map_err(|_| anyhow!("invalid float {s:?}"))?,
            ),
        },
        Kind::Decimal | Kind::Text => Value::String(s.to_string()),
        Kind::Bytes => {
            let hex = s
                .strip_prefix("\\x")
                .ok_or_else(|| anyhow!("bytea value not in hex format"))?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(decode_hex(hex)?))
        }
        Kind::Json => serde_json::from_str(s).map_err(|e| anyhow!("invalid json value: {e}"))?,
        Kind::Timestamp => Value::String(pg_timestamp(s, false)),
        Kind::TimestampTz => Value::String(pg_timestamp(s, true)),
        Kind::Array(elem, delim) => {
            let mut p = ArrayParser {
                s: s.as_bytes(),
                i: 0,
                delim: *delim,
            };
            // optional dimension decoration: [1:2]={...}
            if p.s.first() == Some(&b'[') {
                match s.find('=') {
                    Some(eq) => p.i = eq + 1,
                    None => bail!("invalid array {s:?}"),
                }
            }
            let v = p.parse(elem)?;
            if p.i != p.s.len() {
                bail!("trailing characters in array {s:?}");
            }
            v
        }
    })
}

fn decode_hex(h: &str) -> Result<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        bail!("odd hex length");
    }
    let b = h.as_bytes();
    let nib = |c: u8| -> Result<u8> {
        Ok(match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => bail!("invalid hex digit"),
        })
    };
    (0..b.len() / 2)
        .map(|i| Ok(nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?))
        .collect()
}

/// `2024-01-02 03:04:05.5+00` → `2024-01-02T03:04:05.5Z`; `infinity`, BC dates: unchanged.
fn pg_timestamp(s: &str, tz: bool) -> String {
    if s.len() < 19 || !s.as_bytes()[0].is_ascii_digit() || s.ends_with(" BC") {
        return s.to_string();
    }
    let mut out = s.replacen(' ', "T", 1);
    if tz {
        if let Some(stripped) = out.strip_suffix("+00") {
            out = format!("{stripped}Z");
        }
    }
    out
}

struct ArrayParser<'a> {
    s: &'a [u8],
    i: usize,
    delim: u8,
}

impl ArrayParser<'_> {
    fn parse(&mut self, elem: &Kind) -> Result<Value> {
        if self.s.get(self.i) != Some(&b'{') {
            bail!("array literal must start with '{{'");
        }
        self.i += 1;
        let mut out = Vec::new();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Array(out));
        }
        loop {
            match self.s.get(self.i) {
                Some(b'{') => out.push(self.parse(elem)?),
                Some(b'"') => {
                    self.i += 1;
                    let mut buf = Vec::new();
                    loop {
                        match self.s.get(self.i) {
                            Some(b'\\') => {
                                buf.push(
                                    *self
                                        .s
                                        .get(self.i + 1)
                                        .ok_or_else(|| anyhow!("bad escape"))?,
                                );
                                self.i += 2;
                            }
                            Some(b'"') => {
                                self.i += 1;
                                break;
                            }
                            Some(c) => {
                                buf.push(*c);
                                self.i += 1;
                            }
                            None => bail!("unterminated quoted array element"),
                        }
                    }
                    out.push(pg_text(elem, std::str::from_utf8(&buf)?)?);
                }
                Some(_) => {
                    let start = self.i;
                    while let Some(c) = self.s.get(self.i) {
                        if *c == self.delim || *c == b'}' {
                            break;
                        }
                        self.i += 1;
                    }
                    let tok = std::str::from_utf8(&self.s[start..self.i])?.trim();
                    if tok == "NULL" {
                        out.push(Value::Null);
                    } else {
                        out.push(pg_text(elem, tok)?);
                    }
                }
                None => bail!("unterminated array"),
            }
            match self.s.get(self.i) {
                Some(c) if *c == self.delim => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Array(out));
                }
                _ => bail!("malformed array"),
            }
        }
    }
}

/// A decoded row: column name → value, in column order.
pub type Row = Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(pg_text(&Kind::Int, "-42").unwrap(), json!(-42));
        assert_eq!(
            pg_text(&Kind::Int, "9223372036854775807").unwrap(),
            json!(9223372036854775807i64)
        );
        assert_eq!(pg_text(&Kind::Float, "1.5").unwrap(), json!(1.5));
        assert_eq!(pg_text(&Kind::Float, "NaN").unwrap(), json!("NaN"));
        assert_eq!(
            pg_text(&Kind::Decimal, "12345678901234567890.000001").unwrap(),
            json!("12345678901234567890.000001")
        );
        assert_eq!(pg_text(&Kind::Bool, "t").unwrap(), json!(true));
        assert_eq!(pg_text(&Kind::Bytes, "\\x00ff").unwrap(), json!("AP8="));
        assert_eq!(
            pg_text(&Kind::Json, "{\"a\": [1, 2]}").unwrap(),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            pg_text(&Kind::TimestampTz, "2024-01-02 03:04:05.123+00").unwrap(),
            json!("2024-01-02T03:04:05.123Z")
        );
        assert_eq!(
            pg_text(&Kind::Timestamp, "2024-01-02 03:04:05").unwrap(),
            json!("2024-01-02T03:04:05")
        );
        assert_eq!(
            pg_text(&Kind::Timestamp, "infinity").unwrap(),
            json!("infinity")
        );
        assert!(pg_text(&Kind::Int, "x").is_err());
    }

    #[test]
    fn arrays() {
        let a = Kind::Array(Box::new(Kind::Int), b',');
        assert_eq!(pg_text(&a, "{1,NULL,3}").unwrap(), json!([1, null, 3]));
        assert_eq!(
            pg_text(&a, "{{1,2},{3,4}}").unwrap(),
            json!([[1, 2], [3, 4]])
        );
        assert_eq!(pg_text(&a, "{}").unwrap(), json!([]));
        assert_eq!(pg_text(&a, "[0:1]={5,6}").unwrap(), json!([5, 6]));
        let t = Kind::Array(Box::new(Kind::Text), b',');
        assert_eq!(
            pg_text(&t, r#"{"a b","x\"y",NULL,"NULL",c}"#).unwrap(),
            json!(["a b", "x\"y", null, "NULL", "c"])
        );
        let b = Kind::Array(Box::new(Kind::Bytes), b',');
        assert_eq!(pg_text(&b, r#"{"\\x01"}"#).unwrap(), json!(["AQ=="]));
        assert!(pg_text(&a, "{1,2").is_err());
    }
}
