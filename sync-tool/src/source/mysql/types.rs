//! MySQL/MariaDB type mapping: one function ([`map_value`]) turns a raw value into JSON for
//! both the dump and the binlog. The dump selects each column in the raw form the binlog
//! carries (ENUM/SET as their number, TIMESTAMP as epoch seconds), so both paths feed the
//! same kinds of raw values into the same function. See README.md "Type mapping (MySQL)".

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use mysql_async::Value as My;
use serde_json::Value;

use crate::value::float_value;

/// How a column's value is mapped to JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MyKind {
    /// Integer types: JSON number (exact, signed or unsigned 64-bit).
    Int,
    /// FLOAT (single precision): JSON number with the shortest decimal form of the f32.
    Float,
    /// DOUBLE: JSON number.
    Double,
    /// DECIMAL: exact string.
    Decimal,
    /// CHAR/VARCHAR/TEXT: string.
    Text,
    /// BINARY/VARBINARY/BLOB/GEOMETRY: base64 string.
    Binary,
    /// BINARY(n): base64 of the value zero-padded to n bytes (the binlog strips the padding).
    BinaryFixed(usize),
    /// Signed MEDIUMINT: number (MariaDB's TABLE_MAP marks it unsigned; values >= 2^23 that
    /// arrive from the binlog are sign-extended).
    Int24Signed,
    /// BIT(n): n = 1 → bool, otherwise a string of n '0'/'1'.
    Bit(u32),
    /// ENUM: the label (raw value: 1-based index, 0 = the '' error value).
    Enum(Vec<String>),
    /// SET: array of labels (raw value: bitmask).
    Set(Vec<String>),
    /// JSON (MariaDB: LONGTEXT with a json_valid check): embedded JSON.
    Json,
    /// DATE: `YYYY-MM-DD`.
    Date,
    /// DATETIME: `YYYY-MM-DDTHH:MM:SS[.ffffff]` (no zone, trailing zeros of the fraction trimmed).
    DateTime,
    /// TIMESTAMP: RFC 3339 UTC `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (raw value: epoch seconds).
    Timestamp,
    /// TIME: `[-]HH:MM:SS[.ffffff]` (hours may exceed 24).
    Time,
    /// YEAR: number.
    Year,
}

#[derive(Debug, Clone)]
pub struct MyCol {
    pub name: String,
    pub kind: MyKind,
}

/// The expression the dump selects for a column so that it yields the binlog's raw form.
pub fn dump_expr(c: &MyCol) -> String {
    let q = quote_ident(&c.name);
    match c.kind {
        MyKind::Enum(_) | MyKind::Set(_) => format!("{q}+0"),
        MyKind::Timestamp => format!("UNIX_TIMESTAMP({q})"),
        _ => q,
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn text(v: &My) -> Option<String> {
    match v {
        My::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        My::Int(i) => Some(i.to_string()),
        My::UInt(u) => Some(u.to_string()),
        My::Float(f) => Some(f.to_string()),
        My::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn as_u64(v: &My) -> Result<u64> {
    Ok(match v {
        My::Int(i) => *i as u64,
        My::UInt(u) => *u,
        My::Double(d) => *d as u64,
        My::Bytes(b) => std::str::from_utf8(b)?.trim().parse::<u64>()?,
        other => bail!("expected an integer, got {other:?}"),
    })
}

fn frac(us: u32) -> String {
    if us == 0 {
        String::new()
    } else {
        let s = format!(".{us:06}");
        s.trim_end_matches('0').to_string()
    }
}

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Epoch text `sec[.frac]` (binlog TIMESTAMP, dump UNIX_TIMESTAMP()) → RFC 3339 UTC.
fn epoch_to_rfc3339(s: &str) -> Result<String> {
    let (sec, f) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec
        .trim()
        .parse()
        .map_err(|_| anyhow!("invalid epoch timestamp {s:?}"))?;
    if f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
        bail!("invalid epoch timestamp {s:?}");
    }
    let us: u32 = if f.is_empty() {
        0
    } else {
        format!("{f:0<6}").parse()?
    };
    let (days, rem) = (sec.div_euclid(86_400), sec.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        frac(us)
    ))
}

/// The one mapping: raw value (from the binlog, or from the dump's SELECT of [`dump_expr`])
/// → JSON.
pub fn map_value(kind: &MyKind, v: My) -> Result<Value> {
    if v == My::NULL {
        return Ok(Value::Null);
    }
    Ok(match kind {
        MyKind::Int24Signed => match v {
            My::Int(i) if i >= 0x80_0000 => Value::from(i - 0x100_0000),
            My::UInt(u) if u >= 0x80_0000 => Value::from(u as i64 - 0x100_0000),
            other => map_value(&MyKind::Int, other)?,
        },
        MyKind::BinaryFixed(n) => match v {
            My::Bytes(mut b) => {
                if b.len() < *n {
                    b.resize(*n, 0);
                }
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            other => bail!("expected bytes, got {other:?}"),
        },
        MyKind::Int | MyKind::Year => {
            let n = match &v {
                My::Int(i) => Value::from(*i),
                My::UInt(u) => Value::from(*u),
                _ => {
                    let t = text(&v).ok_or_else(|| anyhow!("expected an integer, got {v:?}"))?;
                    if let Ok(i) = t.parse::<i64>() {
                        Value::from(i)
                    } else {
                        Value::from(
                            t.parse::<u64>()
                                .map_err(|_| anyhow!("invalid integer {t:?}"))?,
                        )
                    }
                }
            };
            // The binlog encodes YEAR 0000 as 1900 (year - 1900 = 0).
            if *kind == MyKind::Year && n == 1900 {
                Value::from(0)
            } else {
                n
            }
        }
        MyKind::Float => match v {
            // shortest decimal form of the single-precision value (0.1f32 → 0.1)
            My::Float(f) => float_value(f.to_string().parse::<f64>()?),
            My::Double(d) => float_value((d as f32).to_string().parse::<f64>()?),
            other => float_value(
                text(&other)
                    .unwrap_or_default()
                    .parse::<f32>()?
                    .to_string()
                    .parse::<f64>()?,
            ),
        },
        MyKind::Double => match v {
            My::Double(d) => float_value(d),
            My::Float(f) => float_value(f as f64),
            other => float_value(text(&other).unwrap_or_default().parse::<f64>()?),
        },
        MyKind::Decimal | MyKind::Text => {
            Value::String(text(&v).ok_or_else(|| anyhow!("unexpected value {v:?}"))?)
        }
        MyKind::Binary => match v {
            My::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            other => bail!("expected bytes, got {other:?}"),
        },
        MyKind::Bit(n) => {
            let x = match v {
                My::Bytes(b) => {
                    if b.len() > 8 {
                        bail!("BIT value longer than 8 bytes");
                    }
                    b.iter().fold(0u64, |a, &c| a << 8 | c as u64)
                }
                other => as_u64(&other)?,
            };
            if *n == 1 {
                Value::Bool(x & 1 == 1)
            } else {
                let w = (*n).clamp(1, 64) as usize;
                Value::String(format!("{x:0w$b}"))
            }
        }
        MyKind::Enum(labels) => {
            let i = as_u64(&v)?;
            if i == 0 {
                Value::String(String::new())
            } else {
                Value::String(labels.get(i as usize - 1).cloned().ok_or_else(|| {
                    anyhow!("ENUM index {i} out of range ({} labels)", labels.len())
                })?)
            }
        }
        MyKind::Set(labels) => {
            let mask = match v {
                // binlog: little-endian bitmask bytes
                My::Bytes(b) => {
                    if b.len() > 8 {
                        bail!("SET value longer than 8 bytes");
                    }
                    b.iter().rev().fold(0u64, |a, &c| a << 8 | c as u64)
                }
                other => as_u64(&other)?,
            };
            let mut out = Vec::new();
            for (i, l) in labels.iter().enumerate().take(64) {
                if mask >> i & 1 == 1 {
                    out.push(Value::String(l.clone()));
                }
            }
            Value::Array(out)
        }
        MyKind::Json => {
            let t = text(&v).ok_or_else(|| anyhow!("unexpected JSON value {v:?}"))?;
            serde_json::from_str(&t).unwrap_or(Value::String(t))
        }
        MyKind::Date => match v {
            My::Date(y, m, d, ..) => Value::String(format!("{y:04}-{m:02}-{d:02}")),
            other => Value::String(text(&other).unwrap_or_default()),
        },
        MyKind::DateTime => match v {
            My::Date(y, m, d, h, mi, s, us) => Value::String(format!(
                "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}",
                frac(us)
            )),
            other => Value::String(text(&other).unwrap_or_default()),
        },
        MyKind::Timestamp => match v {
            My::Date(y, m, d, h, mi, s, us) => Value::String(format!(
                "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}Z",
                frac(us)
            )),
            other => Value::String(epoch_to_rfc3339(&text(&other).unwrap_or_default())?),
        },
        MyKind::Time => match v {
            My::Time(neg, days, h, mi, s, us) => Value::String(format!(
                "{}{:02}:{mi:02}:{s:02}{}",
                if neg { "-" } else { "" },
                days as u64 * 24 + h as u64,
                frac(us)
            )),
            other => Value::String(text(&other).unwrap_or_default()),
        },
    })
}

/// `enum('a','b''c')` / `set(...)` column type → labels.
pub fn parse_labels(column_type: &str) -> Result<Vec<String>> {
    let open = column_type
        .find('(')
        .ok_or_else(|| anyhow!("no value list in {column_type:?}"))?;
    let b: Vec<char> = column_type[open + 1..].chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        Some('\'') if b.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if i + 1 < b.len() => {
                            s.push(b[i + 1]);
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                        None => bail!("unterminated value list in {column_type:?}"),
                    }
                }
                out.push(s);
            }
            ')' => return Ok(out),
            _ => i += 1,
        }
    }
    bail!("unterminated value list in {column_type:?}")
}

/// Kind of a column from `information_schema.COLUMNS` (the dump side).
pub fn kind_from_schema(
    data_type: &str,
    column_type: &str,
    bit_len: Option<u64>,
    is_json: bool,
) -> Result<MyKind> {
    Ok(match data_type.to_ascii_lowercase().as_str() {
        "mediumint" if !column_type.to_ascii_lowercase().contains("unsigned") => {
            MyKind::Int24Signed
        }
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => MyKind::Int,
        "binary" => match column_type
            .split_once('(')
            .and_then(|(_, r)| r.trim_end_matches(')').parse::<usize>().ok())
        {
            Some(n) => MyKind::BinaryFixed(n),
            None => MyKind::Binary,
        },
        "float" => MyKind::Float,
        "double" | "real" | "double precision" => MyKind::Double,
        "decimal" | "numeric" => MyKind::Decimal,
        "json" => MyKind::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            if is_json {
                MyKind::Json
            } else {
                MyKind::Text
            }
        }
        "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" => MyKind::Binary,
        "bit" => MyKind::Bit(bit_len.unwrap_or(1) as u32),
        "enum" => MyKind::Enum(parse_labels(column_type)?),
        "set" => MyKind::Set(parse_labels(column_type)?),
        "date" => MyKind::Date,
        "datetime" => MyKind::DateTime,
        "timestamp" => MyKind::Timestamp,
        "time" => MyKind::Time,
        "year" => MyKind::Year,
        other => bail!("unsupported column type {other} ({column_type})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mapping() {
        assert_eq!(
            map_value(&MyKind::Int, My::UInt(u64::MAX)).unwrap(),
            json!(u64::MAX)
        );
        assert_eq!(map_value(&MyKind::Int, My::Int(-5)).unwrap(), json!(-5));
        assert_eq!(
            map_value(&MyKind::Float, My::Float(0.1)).unwrap(),
            json!(0.1)
        );
        assert_eq!(
            map_value(&MyKind::Decimal, My::Bytes(b"-12.50".to_vec())).unwrap(),
            json!("-12.50")
        );
        assert_eq!(
            map_value(&MyKind::Bit(1), My::Bytes(vec![1])).unwrap(),
            json!(true)
        );
        assert_eq!(
            map_value(&MyKind::Bit(5), My::Bytes(vec![0x15])).unwrap(),
            json!("10101")
        );
        assert_eq!(
            map_value(&MyKind::Bit(10), My::Bytes(vec![0x01, 0x02])).unwrap(),
            json!("0100000010")
        );
        let e = MyKind::Enum(vec!["a".into(), "b".into()]);
        assert_eq!(map_value(&e, My::Int(2)).unwrap(), json!("b"));
        assert_eq!(map_value(&e, My::Int(0)).unwrap(), json!(""));
        assert!(map_value(&e, My::Int(3)).is_err());
        let s = MyKind::Set(vec!["x".into(), "y".into(), "z".into()]);
        assert_eq!(
            map_value(&s, My::Bytes(vec![5])).unwrap(),
            json!(["x", "z"])
        );
        assert_eq!(map_value(&s, My::UInt(6)).unwrap(), json!(["y", "z"]));
        assert_eq!(
            map_value(&MyKind::Timestamp, My::Bytes(b"1704164645".to_vec())).unwrap(),
            json!("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            map_value(&MyKind::Timestamp, My::Bytes(b"1704164645.120000".to_vec())).unwrap(),
            json!("2024-01-02T03:04:05.12Z")
        );
        assert_eq!(
            map_value(&MyKind::Timestamp, My::Bytes(b"1704164645.12".to_vec())).unwrap(),
            json!("2024-01-02T03:04:05.12Z")
        );
        assert_eq!(
            map_value(&MyKind::DateTime, My::Date(2024, 2, 29, 1, 2, 3, 500)).unwrap(),
            json!("2024-02-29T01:02:03.0005")
        );
        assert_eq!(
            map_value(&MyKind::Time, My::Time(true, 1, 2, 3, 4, 0)).unwrap(),
            json!("-26:03:04")
        );
        assert_eq!(
            map_value(&MyKind::Year, My::Bytes(b"1900".to_vec())).unwrap(),
            json!(0)
        );
        assert_eq!(
            map_value(&MyKind::Json, My::Bytes(br#"{"a":[1]}"#.to_vec())).unwrap(),
            json!({"a": [1]})
        );
        assert_eq!(
            map_value(&MyKind::Binary, My::Bytes(vec![0, 255])).unwrap(),
            json!("AP8=")
        );
        assert_eq!(map_value(&MyKind::Text, My::NULL).unwrap(), json!(null));
        assert_eq!(
            map_value(&MyKind::Int24Signed, My::Int(0x80_0000)).unwrap(),
            json!(-8388608)
        );
        assert_eq!(
            map_value(&MyKind::Int24Signed, My::Int(-5)).unwrap(),
            json!(-5)
        );
        assert_eq!(
            map_value(&MyKind::BinaryFixed(4), My::Bytes(b"ab".to_vec())).unwrap(),
            json!("YWIAAA==")
        );
        assert_eq!(
            kind_from_schema("binary", "binary(4)", None, false).unwrap(),
            MyKind::BinaryFixed(4)
        );
        assert_eq!(
            kind_from_schema("mediumint", "mediumint(8) unsigned", None, false).unwrap(),
            MyKind::Int
        );
        assert!(map_value(&MyKind::Timestamp, My::Bytes(b"x".to_vec())).is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_labels("enum('a','b''c','d,e')").unwrap(),
            vec!["a", "b'c", "d,e"]
        );
        assert_eq!(parse_labels("set('')").unwrap(), vec![""]);
        assert!(parse_labels("enum('a").is_err());
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19782), (2024, 2, 29));
    }
}
