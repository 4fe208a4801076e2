//! One answer from the answers of several shards to the same statement: the union of
//! listings (SHOW TABLES of a split database, information_schema object lists), the first
//! shard that knows an object (SHOW CREATE TRIGGER), or statements every shard must accept
//! (LOCK TABLES, UNLOCK TABLES, FLUSH).
//!
//! A union is what one server holding every shard would answer: the column definitions of
//! the first shard; rows about an object that several shards hold (system schemas, databases
//! under an ignore rule) from the first of them only; rows sorted again by the statement's
//! ORDER BY and cut again by its LIMIT. Columns the router added to the statement (to know
//! each row's object, or its sort keys) are taken out again.

use bridge::protocol::packet::{read_lenenc, write_lenenc, write_lenenc_str, write_packet};
use bridge::protocol::resultset::err_packet;
use bridge::protocol::rows::{resultset_from_payloads, text_row};
use bridge::protocol::status::MORE_RESULTS_EXIST;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

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

/// A column of the rows as the shards send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColRef {
    /// By position, from 0.
    At(usize),
    /// The n-th of the columns the router added (from 0).
    Added(usize),
    /// By name or alias (then original name), case-insensitive.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dedup {
    /// Rows about one object (these columns' values) come from the first shard that has it.
    Owner(Vec<ColRef>),
    /// Identical rows once (DISTINCT, UNION).
    WholeRow,
    /// SHOW listings: their name columns (`Tables_in_*`, `Name`, `Db` ...) identify objects
    /// as `Owner` does, and the rows are sorted by them.
    Names,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The rows of every shard, `dedup`, then sorted by `order` (column, descending), then
    /// `limit` (offset, count); the last `added` columns are the router's and go.
    Union {
        dedup: Dedup,
        order: Vec<(ColRef, bool)>,
        limit: Option<(u64, u64)>,
        added: usize,
    },
    /// The first shard (in the service's order) that answered without an error.
    FirstSuccess,
    /// Every shard must succeed: the first error, else the first OK.
    AllOk,
}

impl Mode {
    /// A SHOW listing.
    pub fn listing() -> Mode {
        Mode::Union {
            dedup: Dedup::Names,
            order: vec![],
            limit: None,
            added: 0,
        }
    }
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
    Some(Col {
        name: texts[4].clone(),
        org: texts[5].clone(),
        numeric,
    })
}

/// Whether a column of a SHOW listing names the object a row is about.
fn names_object(c: &Col) -> bool {
    let n = if c.org.is_empty() { &c.name } else { &c.org }.to_ascii_lowercase();
    n.starts_with("tables_in_")
        || [
            "db",
            "name",
            "type",
            "trigger",
            "event",
            "table",
            "field",
            "key_name",
            "seq_in_index",
        ]
        .contains(&n.as_str())
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
    resultset_from_payloads(
        &p.count,
        &p.defs,
        &p.rows,
        p.status & !MORE_RESULTS_EXIST,
        deprecate_eof,
    )
}

/// Compares two values of a column: numbers as numbers, text case-insensitively by upper
/// case (as utf8mb3_general_ci, information_schema's collation, does: `_` after letters),
/// NULL first.
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
            sa.to_uppercase()
                .cmp(&sb.to_uppercase())
                .then_with(|| a.cmp(b))
        }
    }
}

/// The index a column reference has among `cols`, of which the last `added` are the router's.
fn resolve(r: &ColRef, cols: &[Col], added: usize) -> Option<usize> {
    let visible = cols.len().checked_sub(added)?;
    match r {
        ColRef::At(i) => (*i < cols.len()).then_some(*i),
        ColRef::Added(k) => (*k < added).then(|| visible + k),
        ColRef::Name(n) => {
            let v = &cols[..visible];
            v.iter()
                .position(|c| c.name.eq_ignore_ascii_case(n))
                .or_else(|| v.iter().position(|c| c.org.eq_ignore_ascii_case(n)))
        }
    }
}

type Key = Vec<Option<Vec<u8>>>;
/// A row's values, and the row as the shard sent it.
type Decoded<'a> = (Vec<Option<&'a [u8]>>, &'a Vec<u8>);

fn key(values: &[Option<&[u8]>], cols: &[usize]) -> Key {
    cols.iter()
        .map(|&i| values.get(i).copied().flatten().map(<[u8]>::to_vec))
        .collect()
}

/// The rows of `parts` with each object once (see `Dedup`), each with its values.
fn dedup<'a>(parts: &[&'a Part], how: &Dedup, ident: &[usize], visible: usize) -> Vec<Decoded<'a>> {
    let mut out = Vec::new();
    let mut owner: HashMap<Key, usize> = HashMap::new();
    let mut seen: HashSet<Key> = HashSet::new();
    for (n, p) in parts.iter().enumerate() {
        for r in &p.rows {
            let Some(v) = text_row(r) else { continue };
            let keep = match how {
                Dedup::WholeRow => seen.insert(key(&v, &(0..visible).collect::<Vec<_>>())),
                _ if ident.is_empty() => true,
                _ => *owner.entry(key(&v, ident)).or_insert(n) == n,
            };
            if keep {
                out.push((v, r));
            }
        }
    }
    out
}

/// A row without its last `added` values.
fn strip(values: &[Option<&[u8]>], keep: usize) -> Vec<u8> {
    let mut p = Vec::new();
    for v in &values[..keep.min(values.len())] {
        match v {
            Some(s) => write_lenenc_str(&mut p, s),
            None => p.push(0xFB),
        }
    }
    p
}

/// The merged answer of `parts` (in the service's order of their servers).
pub fn merge(parts: &[Part], mode: &Mode, deprecate_eof: bool) -> Vec<u8> {
    if let Some(e) = parts
        .iter()
        .find_map(|p| p.error.as_ref().filter(|_| *mode != Mode::FirstSuccess))
    {
        return error_reply(e);
    }
    let (how, order, limit, added) = match mode {
        Mode::FirstSuccess => {
            if let Some(p) = parts.iter().find(|p| !p.lost && p.error.is_none()) {
                return answer(p, deprecate_eof);
            }
            return match parts.iter().find(|p| p.error.is_some()) {
                Some(p) => answer(p, deprecate_eof),
                None => lost_reply(parts.first().map_or("", |p| &p.server)),
            };
        }
        _ if parts.iter().any(|p| p.lost) => {
            return lost_reply(
                &parts
                    .iter()
                    .find(|p| p.lost)
                    .map(|p| p.server.clone())
                    .unwrap_or_default(),
            )
        }
        Mode::AllOk => {
            return parts
                .iter()
                .find(|p| !p.count.is_empty())
                .or(parts.first())
                .map_or_else(|| lost_reply(""), |p| answer(p, deprecate_eof))
        }
        Mode::Union {
            dedup,
            order,
            limit,
            added,
        } => (dedup, order, limit, *added),
    };
    let Some(first) = parts.iter().find(|p| !p.count.is_empty()) else {
        return parts
            .first()
            .map_or_else(|| lost_reply(""), |p| answer(p, deprecate_eof));
    };
    if let Some(odd) = parts
        .iter()
        .find(|p| !p.count.is_empty() && p.defs.len() != first.defs.len())
    {
        let msg = format!(
            "'{}' and '{}' answered with different columns: no merged result",
            first.server, odd.server
        );
        return err_packet(1, 1105, "HY000", &msg);
    }
    let cols: Vec<Col> = first
        .defs
        .iter()
        .map(|d| {
            column(d).unwrap_or(Col {
                name: String::new(),
                org: String::new(),
                numeric: false,
            })
        })
        .collect();
    let added = added.min(cols.len());
    let visible = cols.len() - added;
    let ident: Vec<usize> = match how {
        Dedup::Owner(refs) => refs
            .iter()
            .filter_map(|r| resolve(r, &cols, added))
            .collect(),
        Dedup::Names => (0..visible).filter(|&i| names_object(&cols[i])).collect(),
        Dedup::WholeRow => vec![],
    };
    let with_rows: Vec<&Part> = parts.iter().filter(|p| !p.count.is_empty()).collect();
    let mut rows = dedup(&with_rows, how, &ident, visible);
    let by_names = *how == Dedup::Names;
    let keys: Vec<(usize, bool, bool)> = if by_names {
        let by = if ident.is_empty() {
            vec![0]
        } else {
            ident.clone()
        };
        by.into_iter()
            .filter(|&i| i < cols.len())
            .map(|i| (i, false, false))
            .collect()
    } else {
        // An ORDER BY the merge cannot follow leaves the shards' rows in shard order.
        order
            .iter()
            .map(|(r, desc)| resolve(r, &cols, added).map(|i| (i, *desc, cols[i].numeric)))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    };
    if !keys.is_empty() {
        rows.sort_by(|(a, _), (b, _)| {
            keys.iter()
                .map(|&(i, desc, numeric)| {
                    let (x, y) = (a.get(i).copied().flatten(), b.get(i).copied().flatten());
                    // SHOW lists names in byte order (`B` before `a`).
                    let o = if by_names {
                        x.cmp(&y)
                    } else {
                        compare(x, y, numeric)
                    };
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
    }
    let (offset, count) = limit.unwrap_or((0, u64::MAX));
    let rows = rows
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(count).unwrap_or(usize::MAX));
    let (count_pl, defs, rows): (Vec<u8>, &[Vec<u8>], Vec<Vec<u8>>) = if added == 0 {
        (
            first.count.clone(),
            &first.defs,
            rows.map(|(_, r)| r.clone()).collect(),
        )
    } else {
        let mut c = Vec::new();
        write_lenenc(&mut c, visible as u64);
        (
            c,
            &first.defs[..visible],
            rows.map(|(v, _)| strip(&v, visible)).collect(),
        )
    };
    resultset_from_payloads(
        &count_pl,
        defs,
        &rows,
        first.status & !MORE_RESULTS_EXIST,
        deprecate_eof,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::packet::Packets;

    fn def(name: &str, ty: u8) -> Vec<u8> {
        let mut p = Vec::new();
        for s in [
            "def",
            "information_schema",
            "t",
            "T",
            name,
            &name.to_ascii_uppercase(),
        ] {
            write_lenenc_str(&mut p, s.as_bytes());
        }
        p.extend_from_slice(&[0x0c, 33, 0, 64, 0, 0, 0, ty, 0, 0, 0, 0, 0]);
        p
    }

    fn part(server: &str, cols: &[(&str, u8)], rows: &[&[Option<&str>]]) -> Part {
        let mut count = Vec::new();
        write_lenenc(&mut count, cols.len() as u64);
        Part {
            server: server.into(),
            count,
            defs: cols.iter().map(|(n, t)| def(n, *t)).collect(),
            rows: rows
                .iter()
                .map(|r| {
                    strip(
                        &r.iter().map(|v| v.map(str::as_bytes)).collect::<Vec<_>>(),
                        r.len(),
                    )
                })
                .collect(),
            status: 2,
            ..Part::default()
        }
    }

    /// The column names and rows of a merged reply (classic EOFs), as text.
    fn result(reply: &[u8]) -> (Vec<String>, Vec<Vec<Option<String>>>) {
        let pk: Vec<Vec<u8>> = Packets::new(reply)
            .map(|p| p.unwrap().payload.to_vec())
            .collect();
        let n = pk[0][0] as usize;
        let names = pk[1..=n].iter().map(|d| column(d).unwrap().name).collect();
        let rows = pk[2 + n..pk.len() - 1]
            .iter()
            .map(|r| {
                text_row(r)
                    .unwrap()
                    .into_iter()
                    .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect()
            })
            .collect();
        (names, rows)
    }

    fn rows_of(reply: &[u8]) -> Vec<Vec<Option<String>>> {
        result(reply).1
    }

    fn s(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|x| Some(x.to_string())).collect()
    }

    fn union(
        dedup: Dedup,
        order: Vec<(ColRef, bool)>,
        limit: Option<(u64, u64)>,
        added: usize,
    ) -> Mode {
        Mode::Union {
            dedup,
            order,
            limit,
            added,
        }
    }

    #[test]
    fn union_keeps_each_object_once_sorts_and_limits() {
        let cols = [
            ("table_schema", 0xfd),
            ("table_name", 0xfd),
            ("table_rows", 0x08),
        ];
        let a = part(
            "s1",
            &cols,
            &[
                &[Some("mysql"), Some("user"), Some("5")],
                &[Some("shop"), Some("Carts"), Some("10")],
                &[Some("d1"), Some("t"), Some("2")],
            ],
        );
        let b = part(
            "s2",
            &cols,
            &[
                &[Some("mysql"), Some("user"), Some("7")],
                &[Some("shop"), Some("items"), Some("9")],
            ],
        );
        let owner = || Dedup::Owner(vec![ColRef::At(0), ColRef::At(1)]);
        let got = rows_of(&merge(
            &[a.clone(), b.clone()],
            &union(owner(), vec![], None, 0),
            false,
        ));
        assert_eq!(
            got,
            vec![
                s(&["mysql", "user", "5"]),
                s(&["shop", "Carts", "10"]),
                s(&["d1", "t", "2"]),
                s(&["shop", "items", "9"])
            ],
            "system table once, from the first shard"
        );
        let got = rows_of(&merge(
            &[a.clone(), b.clone()],
            &union(
                owner(),
                vec![(ColRef::Name("TABLE_NAME".into()), false)],
                Some((1, 2)),
                0,
            ),
            false,
        ));
        assert_eq!(
            got,
            vec![s(&["shop", "items", "9"]), s(&["d1", "t", "2"])],
            "case-insensitive order, then offset 1 count 2"
        );
        let got = rows_of(&merge(
            &[a.clone(), b.clone()],
            &union(owner(), vec![(ColRef::At(2), true)], None, 0),
            false,
        ));
        let n: Vec<String> = got.iter().map(|r| r[2].clone().unwrap()).collect();
        assert_eq!(n, vec!["10", "9", "5", "2"], "numbers as numbers");
        // An ORDER BY it cannot follow: shard order, still limited.
        let got = rows_of(&merge(
            &[a.clone(), b.clone()],
            &union(
                owner(),
                vec![(ColRef::Name("nope".into()), false)],
                Some((0, 1)),
                0,
            ),
            false,
        ));
        assert_eq!(got.len(), 1);
        // DISTINCT: identical rows once, also within a shard's own rows.
        let c = [("table_name", 0xfd)];
        let (x, y) = (
            part("s1", &c, &[&[Some("_x")], &[Some("B")]]),
            part("s2", &c, &[&[Some("a")], &[Some("Zz")]]),
        );
        let got = rows_of(&merge(
            &[x, y],
            &union(Dedup::WholeRow, vec![(ColRef::At(0), false)], None, 0),
            false,
        ));
        assert_eq!(
            got,
            vec![s(&["a"]), s(&["B"]), s(&["Zz"]), s(&["_x"])],
            "as the server orders them"
        );
        let x = part(
            "s1",
            &[("table_schema", 0xfd)],
            &[&[Some("d")], &[Some("e")]],
        );
        let y = part("s2", &[("table_schema", 0xfd)], &[&[Some("d")]]);
        assert_eq!(
            rows_of(&merge(
                &[x, y],
                &union(Dedup::WholeRow, vec![], None, 0),
                false
            ))
            .len(),
            2
        );
    }

    #[test]
    fn added_columns_identify_sort_and_go() {
        // SELECT column_name FROM columns ... ORDER BY table_name, ordinal_position, sent as
        // SELECT column_name, TABLE_SCHEMA, TABLE_NAME, table_name, ordinal_position FROM ...
        let cols = [
            ("column_name", 0xfd),
            ("TABLE_SCHEMA", 0xfd),
            ("TABLE_NAME", 0xfd),
            ("table_name", 0xfd),
            ("ordinal_position", 0x08),
        ];
        let a = part(
            "s1",
            &cols,
            &[
                &[Some("id"), Some("d"), Some("ta"), Some("ta"), Some("1")],
                &[
                    Some("x"),
                    Some("mysql"),
                    Some("user"),
                    Some("user"),
                    Some("1"),
                ],
            ],
        );
        let b = part(
            "s2",
            &cols,
            &[
                &[Some("id"), Some("d"), Some("tb"), Some("tb"), Some("1")],
                &[Some("srv"), Some("d"), Some("tb"), Some("tb"), Some("2")],
                &[
                    Some("x"),
                    Some("mysql"),
                    Some("user"),
                    Some("user"),
                    Some("1"),
                ],
            ],
        );
        let mode = union(
            Dedup::Owner(vec![ColRef::Added(0), ColRef::Added(1)]),
            vec![(ColRef::Added(2), false), (ColRef::Added(3), false)],
            None,
            4,
        );
        let (names, rows) = result(&merge(&[a, b], &mode, false));
        assert_eq!(names, vec!["column_name"], "the router's columns are gone");
        assert_eq!(
            rows,
            vec![s(&["id"]), s(&["id"]), s(&["srv"]), s(&["x"])],
            "same column names of different tables kept, mysql.user once"
        );
    }

    #[test]
    fn show_listings_errors_and_other_modes() {
        let cols = [("Tables_in_shop", 0xfd), ("Table_type", 0xfd)];
        let a = part(
            "s1",
            &cols,
            &[
                &[Some("zeta"), Some("BASE TABLE")],
                &[Some("B"), Some("BASE TABLE")],
            ],
        );
        let b = part(
            "s2",
            &cols,
            &[
                &[Some("ab"), Some("BASE TABLE")],
                &[Some("b"), Some("VIEW")],
            ],
        );
        let got = rows_of(&merge(&[a.clone(), b.clone()], &Mode::listing(), false));
        let names: Vec<String> = got.iter().map(|r| r[0].clone().unwrap()).collect();
        assert_eq!(
            names,
            vec!["B", "ab", "b", "zeta"],
            "sorted by name in byte order (as SHOW TABLES), not by packet bytes"
        );
        let mut e = b.clone();
        e.error = Some(b"\xff\x7a\x04#42S02no such table".to_vec());
        let reply = merge(&[a.clone(), e.clone()], &Mode::listing(), false);
        assert_eq!(&reply[3..5], &[1, 0xff], "an error wins, in sequence");
        assert_eq!(
            merge(&[e.clone(), a.clone()], &Mode::FirstSuccess, false),
            answer(&a, false),
            "first shard that knows it"
        );
        let mut lost = a.clone();
        lost.lost = true;
        let reply = merge(&[lost, b.clone()], &Mode::listing(), false);
        assert!(String::from_utf8_lossy(&reply).contains("Lost connection to 's1'"));
        let mut wide = b.clone();
        wide.defs.push(def("extra", 0xfd));
        assert!(
            String::from_utf8_lossy(&merge(&[a.clone(), wide], &Mode::listing(), false))
                .contains("different columns")
        );
        let ok = Part {
            server: "s1".into(),
            ok: Some(vec![0, 0, 0, 2, 0, 0, 0]),
            ..Part::default()
        };
        let reply = merge(
            &[
                ok.clone(),
                Part {
                    server: "s2".into(),
                    ..ok.clone()
                },
            ],
            &Mode::AllOk,
            true,
        );
        assert_eq!(reply, vec![7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
    }
}
