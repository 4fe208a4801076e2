//! Reply packets as the `diff` key shows them: rows as arrays of values (text or binary
//! protocol), column definitions, OK, EOF and ERR packets as objects.

use bridge::protocol::packet::read_lenenc;
use serde_json::{json, Value};

/// What a packet of a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The column count that starts a result set.
    Header = 1,
    ColumnDef = 2,
    Row = 3,
    Eof = 4,
    Ok = 5,
    Err = 6,
    /// The rest of a 16 MiB+ packet.
    Continuation = 7,
    Other = 8,
}

impl Kind {
    pub fn from_u8(v: u8) -> Kind {
        match v {
            1 => Kind::Header,
            2 => Kind::ColumnDef,
            3 => Kind::Row,
            4 => Kind::Eof,
            5 => Kind::Ok,
            6 => Kind::Err,
            7 => Kind::Continuation,
            _ => Kind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Header => "columns",
            Kind::ColumnDef => "column",
            Kind::Row => "row",
            Kind::Eof => "eof",
            Kind::Ok => "ok",
            Kind::Err => "error",
            Kind::Continuation => "continuation",
            Kind::Other => "packet",
        }
    }
}

/// Values are shown up to this many payload bytes of their packet.
pub const VALUE_LIMIT: usize = 1024;

/// A column's type and flags, for reading binary-protocol rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnType {
    pub ty: u8,
    pub flags: u16,
}

const UNSIGNED: u16 = 32;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads a length-encoded string; on a payload cut at VALUE_LIMIT, what is there, marked.
fn lenenc_str(p: &[u8]) -> Option<(Value, usize)> {
    if p.first() == Some(&0xFB) {
        return Some((Value::Null, 1));
    }
    let (n, used) = read_lenenc(p)?;
    let end = used.saturating_add(n as usize);
    if end <= p.len() {
        Some((Value::String(lossy(&p[used..end])), end))
    } else {
        Some((
            Value::String(format!("{}…", lossy(&p[used.min(p.len())..]))),
            p.len(),
        ))
    }
}

pub fn column_type(payload: &[u8]) -> ColumnType {
    let mut i = 0;
    for _ in 0..6 {
        match lenenc_str(&payload[i.min(payload.len())..]) {
            Some((_, used)) => i += used,
            None => return ColumnType::default(),
        }
    }
    let f = &payload[(i + 1).min(payload.len())..];
    if f.len() < 9 {
        return ColumnType::default();
    }
    ColumnType {
        ty: f[6],
        flags: u16::from_le_bytes([f[7], f[8]]),
    }
}

fn type_name(t: u8) -> String {
    let n = match t {
        0 => "DECIMAL",
        1 => "TINY",
        2 => "SHORT",
        3 => "LONG",
        4 => "FLOAT",
        5 => "DOUBLE",
        6 => "NULL",
        7 => "TIMESTAMP",
        8 => "LONGLONG",
        9 => "INT24",
        10 => "DATE",
        11 => "TIME",
        12 => "DATETIME",
        13 => "YEAR",
        15 => "VARCHAR",
        16 => "BIT",
        245 => "JSON",
        246 => "NEWDECIMAL",
        247 => "ENUM",
        248 => "SET",
        249 => "TINY_BLOB",
        250 => "MEDIUM_BLOB",
        251 => "LONG_BLOB",
        252 => "BLOB",
        253 => "VAR_STRING",
        254 => "STRING",
        255 => "GEOMETRY",
        _ => return format!("TYPE_{t}"),
    };
    n.to_string()
}

fn column_def(p: &[u8]) -> Value {
    let mut v = Vec::new();
    let mut i = 0;
    for _ in 0..6 {
        match lenenc_str(&p[i.min(p.len())..]) {
            Some((s, used)) => {
                v.push(s);
                i += used;
            }
            None => return json!({"raw": hex(p)}),
        }
    }
    let f = &p[(i + 1).min(p.len())..];
    if f.len() < 10 {
        return json!({"raw": hex(p)});
    }
    json!({
        "schema": v[1], "table": v[2], "org_table": v[3], "name": v[4], "org_name": v[5],
        "charset": u16::from_le_bytes([f[0], f[1]]),
        "length": u32::from_le_bytes([f[2], f[3], f[4], f[5]]),
        "type": type_name(f[6]),
        "flags": u16::from_le_bytes([f[7], f[8]]),
        "decimals": f[9],
    })
}

fn text_row(p: &[u8]) -> Value {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match lenenc_str(&p[i..]) {
            Some((s, used)) => {
                out.push(s);
                i += used;
            }
            None => break,
        }
    }
    Value::Array(out)
}

fn int(b: &[u8], unsigned: bool) -> String {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    let u = u64::from_le_bytes(v);
    if unsigned {
        return u.to_string();
    }
    let shift = 64 - 8 * b.len() as u32;
    (((u << shift) as i64) >> shift).to_string()
}

fn temporal(ty: u8, b: &[u8]) -> String {
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    match ty {
        11 => {
            if b.len() < 8 {
                return "00:00:00".into();
            }
            let days = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
            let sign = if b[0] == 1 { "-" } else { "" };
            let mut s = format!(
                "{sign}{:02}:{:02}:{:02}",
                days * 24 + b[5] as u32,
                b[6],
                b[7]
            );
            if b.len() >= 12 {
                s.push_str(&format!(
                    ".{:06}",
                    u32::from_le_bytes([b[8], b[9], b[10], b[11]])
                ));
            }
            s
        }
        _ => {
            if b.len() < 4 {
                return "0000-00-00".into();
            }
            let mut s = format!("{:04}-{:02}-{:02}", u16_at(0), b[2], b[3]);
            if ty != 10 {
                let t = |i: usize| b.get(i).copied().unwrap_or(0);
                s.push_str(&format!(" {:02}:{:02}:{:02}", t(4), t(5), t(6)));
                if b.len() >= 11 {
                    s.push_str(&format!(
                        ".{:06}",
                        u32::from_le_bytes([b[7], b[8], b[9], b[10]])
                    ));
                }
            }
            s
        }
    }
}

fn binary_row(p: &[u8], cols: &[ColumnType]) -> Value {
    let bitmap_len = (cols.len() + 7 + 2) / 8;
    let Some(bitmap) = p.get(1..1 + bitmap_len) else {
        return json!({"raw": hex(p)});
    };
    let mut i = 1 + bitmap_len;
    let mut out = Vec::new();
    for (n, c) in cols.iter().enumerate() {
        let bit = n + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            out.push(Value::Null);
            continue;
        }
        let fixed = match c.ty {
            1 => Some(1),
            2 | 13 => Some(2),
            3 | 9 | 4 => Some(4),
            8 | 5 => Some(8),
            _ => None,
        };
        let rest = &p[i.min(p.len())..];
        let value = match (c.ty, fixed) {
            (_, Some(n)) if rest.len() < n => {
                out.push(Value::String("…".into()));
                break;
            }
            (4, Some(n)) => {
                i += n;
                f32::from_le_bytes(rest[..4].try_into().unwrap()).to_string()
            }
            (5, Some(n)) => {
                i += n;
                f64::from_le_bytes(rest[..8].try_into().unwrap()).to_string()
            }
            (_, Some(n)) => {
                i += n;
                int(&rest[..n], c.flags & UNSIGNED != 0)
            }
            (7 | 10 | 11 | 12, None) => {
                let len = rest.first().copied().unwrap_or(0) as usize;
                if rest.len() < 1 + len {
                    out.push(Value::String("…".into()));
                    break;
                }
                i += 1 + len;
                temporal(c.ty, &rest[1..1 + len])
            }
            _ => match lenenc_str(rest) {
                Some((s, used)) => {
                    i += used;
                    out.push(s);
                    continue;
                }
                None => break,
            },
        };
        out.push(Value::String(value));
    }
    Value::Array(out)
}

fn ok(p: &[u8]) -> Value {
    let body = &p[1.min(p.len())..];
    let Some((affected, a)) = read_lenenc(body) else {
        return json!({"raw": hex(p)});
    };
    let Some((insert_id, b)) = read_lenenc(&body[a..]) else {
        return json!({"raw": hex(p)});
    };
    let rest = &body[a + b..];
    if rest.len() < 4 {
        return json!({"affected_rows": affected, "insert_id": insert_id});
    }
    let info = match read_lenenc(&rest[4..]) {
        Some((n, used)) if used + n as usize <= rest.len() - 4 => {
            lossy(&rest[4 + used..4 + used + n as usize])
        }
        _ => lossy(&rest[4..]),
    };
    json!({
        "affected_rows": affected, "insert_id": insert_id,
        "status": u16::from_le_bytes([rest[0], rest[1]]),
        "warnings": u16::from_le_bytes([rest[2], rest[3]]),
        "info": info,
    })
}

fn hex(p: &[u8]) -> String {
    p.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

/// A packet's payload (cut at VALUE_LIMIT) shown for its kind; `cols` are the column types
/// of the result it belongs to (binary rows need them).
pub fn describe(kind: Kind, payload: &[u8], binary: bool, cols: &[ColumnType]) -> Value {
    let p = &payload[..payload.len().min(VALUE_LIMIT)];
    match kind {
        Kind::Header => json!(read_lenenc(p).map_or(0, |(n, _)| n)),
        Kind::ColumnDef => column_def(p),
        Kind::Row if binary && p.first() == Some(&0) => binary_row(p, cols),
        Kind::Row => text_row(p),
        Kind::Ok if p.len() > 5 || p.first() == Some(&0) => ok(p),
        Kind::Ok | Kind::Eof if p.len() >= 5 => {
            json!({"warnings": u16::from_le_bytes([p[1], p[2]]), "status": u16::from_le_bytes([p[3], p[4]])})
        }
        Kind::Err => match bridge::protocol::ReplyError::parse(p) {
            Some(e) => json!({"code": e.code, "sqlstate": e.sqlstate, "message": e.message}),
            None => json!({"raw": hex(p)}),
        },
        _ => json!({"raw": hex(p)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::packet::write_lenenc_str;

    fn coldef(name: &str, ty: u8, flags: u16) -> Vec<u8> {
        let mut p = Vec::new();
        for s in ["def", "db", "t", "t", name, name] {
            write_lenenc_str(&mut p, s.as_bytes());
        }
        p.push(0x0C);
        p.extend_from_slice(&45u16.to_le_bytes());
        p.extend_from_slice(&11u32.to_le_bytes());
        p.push(ty);
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        p
    }

    #[test]
    fn rows_and_columns() {
        let mut row = Vec::new();
        write_lenenc_str(&mut row, b"1");
        row.push(0xFB);
        write_lenenc_str(&mut row, b"x");
        assert_eq!(
            describe(Kind::Row, &row, false, &[]),
            json!(["1", null, "x"])
        );
        let c = describe(Kind::ColumnDef, &coldef("v", 253, 0), false, &[]);
        assert_eq!(
            (c["name"].as_str(), c["type"].as_str(), c["length"].as_u64()),
            (Some("v"), Some("VAR_STRING"), Some(11))
        );
        assert_eq!(
            column_type(&coldef("v", 3, 32)),
            ColumnType { ty: 3, flags: 32 }
        );
    }

    #[test]
    fn binary_rows() {
        let cols = [
            ColumnType { ty: 3, flags: 0 },
            ColumnType { ty: 253, flags: 0 },
            ColumnType { ty: 8, flags: 32 },
            ColumnType { ty: 12, flags: 0 },
            ColumnType { ty: 1, flags: 0 },
        ];
        // header, null bitmap (7 columns' worth: (5 + 9) / 8 = 1 byte), values
        let mut row = vec![0x00, 0b0100_0000];
        row.extend_from_slice(&(-5i32).to_le_bytes());
        write_lenenc_str(&mut row, b"abc");
        row.extend_from_slice(&u64::MAX.to_le_bytes());
        row.extend_from_slice(&[7, 0xE8, 0x07, 2, 29, 13, 14, 15]);
        assert_eq!(
            describe(Kind::Row, &row, true, &cols),
            json!([
                "-5",
                "abc",
                "18446744073709551615",
                "2024-02-29 13:14:15",
                null
            ])
        );
    }

    #[test]
    fn long_values_are_cut() {
        let mut row = Vec::new();
        write_lenenc_str(&mut row, &vec![b'a'; 3000]);
        let v = describe(Kind::Row, &row, false, &[]);
        let s = v[0].as_str().unwrap();
        assert!(s.ends_with('…') && s.len() < VALUE_LIMIT + 4, "{}", s.len());
    }

    #[test]
    fn ok_and_errors() {
        let okp = [0x00, 2, 0, 0x02, 0, 1, 0];
        assert_eq!(
            describe(Kind::Ok, &okp, false, &[]),
            json!({"affected_rows": 2, "insert_id": 0, "status": 2, "warnings": 1, "info": ""})
        );
        let mut err = vec![0xFF, 0x7A, 0x04, b'#'];
        err.extend_from_slice(b"42S02Table 'x' doesn't exist");
        assert_eq!(
            describe(Kind::Err, &err, false, &[]),
            json!({"code": 1146, "sqlstate": "42S02", "message": "Table 'x' doesn't exist"})
        );
        assert_eq!(
            describe(Kind::Eof, &[0xFE, 0, 0, 0x22, 0], false, &[]),
            json!({"warnings": 0, "status": 34})
        );
    }
}
