//! One answer from the answers of several shards to the same statement: the union of
//! listings (SHOW TABLES of a split database, information_schema object lists), the first
//! shard that knows an object (SHOW CREATE TRIGGER), or statements every shard must accept
//! (LOCK TABLES, UNLOCK TABLES, FLUSH).
//!
//! A union is what one server holding every shard would answer: the column definitions of
//! the first shard, an object that several shards hold (system schemas, databases under an
//! ignore rule) once, rows sorted again by the statement's ORDER BY and cut again by its LIMIT.
//! An object is known by its name columns (`*_SCHEMA`, `*_NAME`, positions; `Db`, `Name`,
//! `Tables_in_*` ... of SHOW); rows without such columns count as a whole.

use crate::sql::info::{OrderItem, OrderKey};
use bridge::protocol::packet::{read_lenenc, write_packet};
use bridge::protocol::resultset::err_packet;
use bridge::protocol::rows::{resultset_from_payloads, text_row};
use bridge::protocol::status::MORE_RESULTS_EXIST;
use std::cmp::Ordering;
use std::collections::HashSet;

/// One shard's answer.
#[derive(Debug, Default, Clone)]
pub struct Part {
    pub server: String,
    /// The column-count payload; empty when the answer is not a result set.
    pub count: Vec<u8>,
    pub defs: Vec<Vec<u8>>,
    pub rows: Vec<Vec<u8>>,
    /// The OK payload of an answer without a result set.
    pub ok: Option<Vec<u8>>,
    /// The ERR payload.
    pub error: Option<Vec<u8>>,
    /// Server status of the answer's last packet.
    pub status: u16,
    /// The shard's connection was lost before it answered.
    pub lost: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The rows of every shard, each object once, then `order`, then `limit` (offset, count);
    /// SHOW listings are sorted by their name columns.
    Union { order: Vec<OrderItem>, limit: Option<(u64, u64)>, by_name: bool },
    /// The first shard (in the service's order) that answered without an error.
    FirstSuccess,
    /// Every shard must succeed: the first error, else the first OK.
    AllOk,
}

struct Col {
    name: String,
    org: String,
    numeric: bool,
}

fn lenenc_str(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, used) = read_lenenc(p)?;
    let end = used.checked_add(usize::try_from(n).ok()?)?;
    Some((p.get(used..end)?, &p[end..]))
}

/// Name, original name and whether the type is numeric, from a column definition.
fn column(def: &[u8]) -> Option<Col> {
    let mut rest = def;
    let mut texts = Vec::new();
    for _ in 0..6 {
        let (s, r) = lenenc_str(rest)?;
        texts.push(String::from_utf8_lossy(s).into_owned());
        rest = r;
    }
    // 0x0c, charset (2), length (4), type (1), flags (2), decimals (1)
    let ty = *rest.get(7)?;
    let numeric = matches!(ty, 0x00..=0x05 | 0x08 | 0x09 | 0x0d | 0xf6);
    Some(Col { name: texts[4].clone(), org: texts[5].clone(), numeric })
}

/// Whether a column names the object a row is about.
fn names_object(c: &Col) -> bool {
    let n = if c.org.is_empty() { &c.name } else { &c.org }.to_ascii_lowercase();
    n.ends_with("_schema")
        || n.ends_with("_name")
        || n.starts_with("tables_in_")
        || ["ordinal_position", "seq_in_index", "routine_type", "db", "name", "type", "trigger", "event", "field", "table", "key_name"].contains(&n.as_str())
}

fn error_reply(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_packet(&mut out, 1, payload);
    out
}

fn lost_reply(server: &str) -> Vec<u8> {
    err_packet(1, 1927, "70100", &format!("Lost connection to '{server}' while it answered: the merged result would be incomplete"))
}

/// A part's own answer, rebuilt (fresh sequence numbers, EOFs as the client negotiated).
fn answer(p: &Part, deprecate_eof: bool) -> Vec<u8> {
    if let Some(e) = &p.error {
        return error_reply(e);
    }
    if p.count.is_empty() {
        return error_reply(p.ok.as_deref().unwrap_or(&[0, 0, 0, 2, 0, 0, 0]));
    }
    resultset_from_payloads(&p.count, &p.defs, &p.rows, p.status & !MORE_RESULTS_EXIST, deprecate_eof)
}

/// Compares two values of a column: numbers as numbers, text case-insensitively (the
/// collation of information_schema's columns), NULL first.
fn compare(a: Option<&[u8]>, b: Option<&[u8]>, numeric: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(a), Some(b)) => {
            let (sa, sb) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
            if numeric {
                if let (Ok(x), Ok(y)) = (sa.trim().parse::<f64>(), sb.trim().parse::<f64>()) {
                    return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                }
            }
            sa.to_lowercase().cmp(&sb.to_lowercase()).then_with(|| a.cmp(b))
        }
    }
}

/// The column index an ORDER BY item refers to.
fn resolve(key: &OrderKey, cols: &[Col]) -> Option<usize> {
    match key {
        OrderKey::Position(n) => (*n >= 1 && *n <= cols.len()).then(|| n - 1),
        OrderKey::Name(n) => cols.iter().position(|c| c.name.eq_ignore_ascii_case(n)).or_else(|| cols.iter().position(|c| c.org.eq_ignore_ascii_case(n))),
        OrderKey::Expression => None,
    }
}

/// The merged answer of `parts` (in the service's order of their servers).
pub fn merge(parts: &[Part], mode: &Mode, deprecate_eof: bool) -> Vec<u8> {
    if let Some(e) = parts.iter().find_map(|p| p.error.as_ref().filter(|_| *mode != Mode::FirstSuccess)) {
        return error_reply(e);
    }
    match mode {
        Mode::FirstSuccess => {
            if let Some(p) = parts.iter().find(|p| !p.lost && p.error.is_none()) {
                return answer(p, deprecate_eof);
            }
            return match parts.iter().find(|p| p.error.is_some()) {
                Some(p) => answer(p, deprecate_eof),
                None => lost_reply(parts.first().map_or("", |p| &p.server)),
            };
        }
        _ if parts.iter().any(|p| p.lost) => return lost_reply(&parts.iter().find(|p| p.lost).map(|p| p.server.clone()).unwrap_or_default()),
        Mode::AllOk => return parts.iter().find(|p| !p.count.is_empty()).or(parts.first()).map_or_else(|| lost_reply(""), |p| answer(p, deprecate_eof)),
        Mode::Union { .. } => {}
    }
    let Mode::Union { order, limit, by_name } = mode else { unreachable!() };
    let Some(first) = parts.iter().find(|p| !p.count.is_empty()) else {
        return parts.first().map_or_else(|| lost_reply(""), |p| answer(p, deprecate_eof));
    };
    let cols: Vec<Col> = first.defs.iter().map(|d| column(d).unwrap_or(Col { name: String::new(), org: String::new(), numeric: false })).collect();
    let ident: Vec<usize> = (0..cols.len()).filter(|&i| names_object(&cols[i])).collect();
    let key_of = |v: &[Option<&[u8]>]| -> Vec<Option<Vec<u8>>> {
        if ident.is_empty() {
            v.iter().map(|x| x.map(|x| x.to_vec())).collect()
        } else {
            ident.iter().map(|&i| v.get(i).copied().flatten().map(|x| x.to_vec())).collect()
        }
    };
    // Each object once: rows of a later shard about an object an earlier shard listed go.
    let mut seen: HashSet<Vec<Option<Vec<u8>>>> = HashSet::new();
    let mut rows: Vec<&Vec<u8>> = Vec::new();
    for p in parts.iter().filter(|p| !p.count.is_empty()) {
        let mut mine = Vec::new();
        for r in &p.rows {
            let Some(v) = text_row(r) else { continue };
            let k = key_of(&v);
            if !seen.contains(&k) {
                rows.push(r);
                mine.push(k);
            }
        }
        seen.extend(mine);
    }
    let keys: Vec<(usize, bool)> = if *by_name {
        let by = if ident.is_empty() { vec![0] } else { ident.clone() };
        by.into_iter().filter(|&i| i < cols.len()).map(|i| (i, false)).collect()
    } else {
        order.iter().map(|o| resolve(&o.key, &cols).map(|i| (i, o.desc))).collect::<Option<Vec<_>>>().unwrap_or_default()
    };
    if !keys.is_empty() {
        let mut decoded: Vec<(Vec<Option<&[u8]>>, &Vec<u8>)> = rows.iter().map(|r| (text_row(r).unwrap_or_default(), *r)).collect();
        decoded.sort_by(|(a, _), (b, _)| {
            keys.iter()
                .map(|&(i, desc)| {
                    let o = compare(a.get(i).copied().flatten(), b.get(i).copied().flatten(), cols[i].numeric && !*by_name);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        rows = decoded.into_iter().map(|(_, r)| r).collect();
    }
    if let Some((offset, count)) = limit {
        rows = rows.into_iter().skip(*offset as usize).take(*count as usize).collect();
    }
    let rows: Vec<Vec<u8>> = rows.into_iter().cloned().collect();
    resultset_from_payloads(&first.count, &first.defs, &rows, first.status & !MORE_RESULTS_EXIST, deprecate_eof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::packet::{write_lenenc, write_lenenc_str, Packets};

    fn def(name: &str, ty: u8) -> Vec<u8> {
        let mut p = Vec::new();
        for s in ["def", "information_schema", "t", "T", name, &name.to_ascii_uppercase()] {
            write_lenenc_str(&mut p, s.as_bytes());
        }
        p.extend_from_slice(&[0x0c, 33, 0, 64, 0, 0, 0, ty, 0, 0, 0, 0, 0]);
        p
    }

    fn row(v: &[Option<&str>]) -> Vec<u8> {
        let mut p = Vec::new();
        for x in v {
            match x {
                Some(s) => write_lenenc_str(&mut p, s.as_bytes()),
                None => p.push(0xfb),
            }
        }
        p
    }

    fn part(server: &str, cols: &[(&str, u8)], rows: &[&[Option<&str>]]) -> Part {
        let mut count = Vec::new();
        write_lenenc(&mut count, cols.len() as u64);
        Part {
            server: server.into(),
            count,
            defs: cols.iter().map(|(n, t)| def(n, *t)).collect(),
            rows: rows.iter().map(|r| row(r)).collect(),
            status: 2,
            ..Part::default()
        }
    }

    /// The rows of a merged reply, as text.
    fn rows_of(reply: &[u8]) -> Vec<Vec<Option<String>>> {
        let pk: Vec<Vec<u8>> = Packets::new(reply).map(|p| p.unwrap().payload.to_vec()).collect();
        let n = pk[0][0] as usize;
        pk[2 + n..pk.len() - 1].iter().map(|r| text_row(r).unwrap().into_iter().map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned())).collect()).collect()
    }

    fn s(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|x| Some(x.to_string())).collect()
    }

    #[test]
    fn union_dedups_objects_sorts_and_limits() {
        let cols = [("table_schema", 0xfd), ("table_name", 0xfd), ("table_rows", 0x08)];
        let a = part("s1", &cols, &[&[Some("mysql"), Some("user"), Some("5")], &[Some("shop"), Some("Carts"), Some("10")], &[Some("d1"), Some("t"), Some("2")]]);
        let b = part("s2", &cols, &[&[Some("mysql"), Some("user"), Some("7")], &[Some("shop"), Some("items"), Some("9")]]);
        let union = |order: Vec<OrderItem>, limit| Mode::Union { order, limit, by_name: false };
        let got = rows_of(&merge(&[a.clone(), b.clone()], &union(vec![], None), false));
        assert_eq!(got, vec![s(&["mysql", "user", "5"]), s(&["shop", "Carts", "10"]), s(&["d1", "t", "2"]), s(&["shop", "items", "9"])], "system table once, from the first shard");
        let by = |k: OrderKey, desc| OrderItem { key: k, desc };
        let got = rows_of(&merge(&[a.clone(), b.clone()], &union(vec![by(OrderKey::Name("TABLE_NAME".into()), false)], Some((1, 2))), false));
        assert_eq!(got, vec![s(&["shop", "items", "9"]), s(&["d1", "t", "2"])], "case-insensitive order, then offset 1 count 2");
        let got = rows_of(&merge(&[a.clone(), b.clone()], &union(vec![by(OrderKey::Position(3), true)], None), false));
        let n: Vec<String> = got.iter().map(|r| r[2].clone().unwrap()).collect();
        assert_eq!(n, vec!["10", "9", "5", "2"], "numbers as numbers");
        // An expression cannot be sorted by: shard order, still limited.
        let got = rows_of(&merge(&[a.clone(), b.clone()], &union(vec![by(OrderKey::Expression, false)], Some((0, 1))), false));
        assert_eq!(got.len(), 1);
        // The same rows within one shard are all kept (a projection without names).
        let x = part("s1", &[("table_rows", 8)], &[&[Some("1")], &[Some("1")]]);
        let y = part("s2", &[("table_rows", 8)], &[&[Some("1")]]);
        assert_eq!(rows_of(&merge(&[x, y], &union(vec![], None), false)).len(), 2);
    }

    #[test]
    fn show_listings_errors_and_other_modes() {
        let cols = [("Tables_in_shop", 0xfd), ("Table_type", 0xfd)];
        let a = part("s1", &cols, &[&[Some("zeta"), Some("BASE TABLE")]]);
        let b = part("s2", &cols, &[&[Some("ab"), Some("BASE TABLE")], &[Some("b"), Some("VIEW")]]);
        let got = rows_of(&merge(&[a.clone(), b.clone()], &Mode::Union { order: vec![], limit: None, by_name: true }, false));
        let names: Vec<String> = got.iter().map(|r| r[0].clone().unwrap()).collect();
        assert_eq!(names, vec!["ab", "b", "zeta"], "sorted by name, not by packet bytes");
        let mut e = b.clone();
        e.error = Some(b"\xff\x7a\x04#42S02no such table".to_vec());
        let reply = merge(&[a.clone(), e.clone()], &Mode::Union { order: vec![], limit: None, by_name: true }, false);
        assert_eq!(&reply[3..5], &[1, 0xff], "an error wins, in sequence");
        assert_eq!(merge(&[e.clone(), a.clone()], &Mode::FirstSuccess, false), answer(&a, false), "first shard that knows it");
        let mut lost = a.clone();
        lost.lost = true;
        let reply = merge(&[lost, b.clone()], &Mode::Union { order: vec![], limit: None, by_name: true }, false);
        assert!(String::from_utf8_lossy(&reply).contains("Lost connection to 's1'"));
        let ok = Part { server: "s1".into(), ok: Some(vec![0, 0, 0, 2, 0, 0, 0]), ..Part::default() };
        let reply = merge(&[ok.clone(), Part { server: "s2".into(), ..ok.clone() }], &Mode::AllOk, true);
        assert_eq!(reply, vec![7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
    }
}
