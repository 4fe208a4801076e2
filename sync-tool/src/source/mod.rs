//! Parts shared by the drivers: table selection, table metadata, row → etcd key/value,
//! the change operations every driver emits into the [`Sink`](crate::sink::Sink), and
//! the progress reporting of dumps.

pub mod mysql;
pub mod postgres;
pub mod scan;
pub mod snapshot;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::config::Tables;
use crate::keys::{push_pk_segment, KeyTemplate};
use crate::metrics::METRICS;
use crate::sink::Sink;
use crate::value::Row;

/// `schema.table` glob patterns (`*`, `?`); a pattern without a dot matches the table name
/// in any schema.
pub struct Filter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Filter {
    pub fn new(t: &Tables) -> Filter {
        Filter {
            include: t.include.clone(),
            exclude: t.exclude.clone(),
        }
    }
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        let hit = |p: &String| {
            if p.contains('.') {
                glob(p, &format!("{schema}.{table}"))
            } else {
                glob(p, table)
            }
        };
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

pub fn glob(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A selected table.
#[derive(Debug, Clone)]
pub struct TableMeta {
    pub schema: String,
    pub name: String,
    /// etcd prefix owning the table's keys (ends in '/').
    pub prefix: String,
    /// Primary-key column names in key order.
    pub pk: Vec<String>,
    /// `schema.table`.
    label: String,
}

impl TableMeta {
    pub fn new(tpl: &KeyTemplate, schema: &str, name: &str, pk: Vec<String>) -> TableMeta {
        TableMeta {
            schema: schema.to_string(),
            name: name.to_string(),
            prefix: tpl.table_prefix(schema, name),
            pk,
            label: format!("{schema}.{name}"),
        }
    }
    pub fn label(&self) -> String {
        self.label.clone()
    }
    pub fn label_str(&self) -> &str {
        &self.label
    }
}

/// No two selected tables may share a prefix or have nested prefixes.
pub fn check_prefixes(tables: &[TableMeta]) -> Result<()> {
    let mut p: Vec<(&str, String)> = tables
        .iter()
        .map(|t| (t.prefix.as_str(), t.label()))
        .collect();
    p.sort();
    for w in p.windows(2) {
        if w[1].0.starts_with(w[0].0) {
            bail!(
                "tables {} and {} map to overlapping etcd prefixes {} / {}; put {{schema}} in sync.key_template or exclude one",
                w[0].1, w[1].1, w[0].0, w[1].0
            );
        }
    }
    Ok(())
}

/// Turns rows of one column list into etcd keys and values. The value is the bytes
/// `serde_json::to_vec` gives for the row as a [`Row`] map, written without building the map:
/// the column names are escaped once, not copied and hashed for every row.
pub struct RowEncoder {
    /// `{"first":`, `,"second":`, …
    names: Vec<Vec<u8>>,
    /// Positions of the primary-key columns, in key order.
    pk: Vec<usize>,
}

impl RowEncoder {
    pub fn new<S: AsRef<str>>(t: &TableMeta, names: &[S]) -> Result<RowEncoder> {
        let pk =
            t.pk.iter()
                .map(|c| names.iter().position(|n| n.as_ref() == c))
                .collect::<Option<Vec<usize>>>();
        let Some(pk) = pk else {
            bail!(
                "table {}: a primary-key column is not among the columns {:?}",
                t.label(),
                names.iter().map(AsRef::as_ref).collect::<Vec<_>>()
            );
        };
        let names = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut b = vec![if i == 0 { b'{' } else { b',' }];
                serde_json::to_writer(&mut b, n.as_ref()).expect("writing to a Vec");
                b.push(b':');
                b
            })
            .collect();
        Ok(RowEncoder { names, pk })
    }

    pub fn key(&self, t: &TableMeta, values: &[Value]) -> Result<String> {
        let mut key = String::with_capacity(t.prefix.len() + 24);
        key.push_str(&t.prefix);
        push_pk_segment(&mut key, self.pk.iter().map(|&i| &values[i]))?;
        Ok(key)
    }

    pub fn json(&self, values: &[Value]) -> Vec<u8> {
        debug_assert_eq!(values.len(), self.names.len());
        let mut out = Vec::with_capacity(16 * self.names.len() + 64);
        if self.names.is_empty() {
            out.push(b'{');
        }
        for (name, v) in self.names.iter().zip(values) {
            out.extend_from_slice(name);
            serde_json::to_writer(&mut out, v).expect("writing to a Vec");
        }
        out.push(b'}');
        out
    }

    /// Writes an upsert of the row.
    pub async fn upsert(&self, sink: &mut Sink, t: &TableMeta, values: &[Value]) -> Result<()> {
        let key = self.key(t, values)?;
        sink.put(key, self.json(values), Some(t.label_str())).await
    }

    /// Writes the new image of an updated row under `new_key`, and deletes `old_key` first
    /// when the update changed the primary key.
    pub async fn update(
        &self,
        sink: &mut Sink,
        t: &TableMeta,
        old_key: Option<String>,
        new_key: String,
        values: &[Value],
    ) -> Result<()> {
        if let Some(old) = old_key.filter(|k| *k != new_key) {
            sink.delete(old, Some(t.label_str())).await?;
        }
        sink.put(new_key, self.json(values), Some(t.label_str()))
            .await
    }

    /// Writes a delete of the row.
    pub async fn delete(&self, sink: &mut Sink, t: &TableMeta, values: &[Value]) -> Result<()> {
        let key = self.key(t, values)?;
        sink.delete(key, Some(t.label_str())).await
    }
}

/// Keys of rows that no longer exist, left by an earlier copy: a dump notes etcd's revision
/// and the tables' prefixes that hold keys before it starts, and afterwards deletes the keys
/// under those prefixes it did not write again. A prefix that was empty needs no scan (the
/// first dump of a large table would otherwise range over all of its new keys).
pub struct StaleKeys {
    rev: i64,
    prefixes: Vec<(String, String)>,
}

impl StaleKeys {
    pub async fn before_dump<'a>(
        sink: &mut Sink,
        tables: impl IntoIterator<Item = &'a TableMeta>,
    ) -> Result<StaleKeys> {
        let rev = sink.revision().await?;
        let mut prefixes = Vec::new();
        for t in tables {
            if !sink.prefix_is_empty(&t.prefix).await? {
                prefixes.push((t.prefix.clone(), t.label()));
            }
        }
        Ok(StaleKeys { rev, prefixes })
    }

    /// Call after the dump's data is in etcd ([`Sink::flush_data`]).
    pub async fn remove(self, sink: &mut Sink) -> Result<()> {
        for (prefix, label) in &self.prefixes {
            let removed = sink.remove_stale(prefix, self.rev).await?;
            if removed > 0 {
                METRICS.stale_keys_removed.add(removed);
                tracing::info!(table = %label, removed, "removed keys of rows that no longer exist");
            }
        }
        Ok(())
    }
}

/// Dump progress: logs rows and rows/s per table every few seconds.
pub struct Progress {
    table: String,
    rows: u64,
    start: Instant,
    last_log: Instant,
    pending_metric: u64,
}

impl Progress {
    pub fn new(table: &str) -> Progress {
        tracing::info!(table, "dump: table started");
        Progress {
            table: table.into(),
            rows: 0,
            start: Instant::now(),
            last_log: Instant::now(),
            pending_metric: 0,
        }
    }
    pub fn row(&mut self) {
        self.rows += 1;
        self.pending_metric += 1;
        if self.pending_metric >= 1000 {
            METRICS.add_dump_rows(&self.table, self.pending_metric);
            self.pending_metric = 0;
            if self.last_log.elapsed() >= Duration::from_secs(5) {
                self.last_log = Instant::now();
                let secs = self.start.elapsed().as_secs_f64();
                tracing::info!(table = %self.table, rows = self.rows, rows_per_s = (self.rows as f64 / secs) as u64, "dump: progress");
            }
        }
    }
    pub fn done(self) {
        METRICS.add_dump_rows(&self.table, self.pending_metric);
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        tracing::info!(table = %self.table, rows = self.rows, rows_per_s = (self.rows as f64 / secs) as u64, secs = format!("{secs:.2}"), "dump: table done");
    }
}

/// Stable short fingerprint of the selected table set, stored in the checkpoint: a
/// different selection forces a re-dump.
pub fn selection_fingerprint(tables: &[TableMeta]) -> String {
    let mut names: Vec<String> = tables
        .iter()
        .map(|t| format!("{}={}", t.label(), t.prefix))
        .collect();
    names.sort();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in names.join("\n").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Rewrites the stored rows of a table after its column list changed (ALTER TABLE seen in the
/// stream): dropped columns are removed, added columns are set to null (or kept if present),
/// columns ordered as in the new list. Idempotent; the new column list is stored after the
/// rows, so a crash in the middle repeats the migration.
pub async fn migrate_columns(sink: &mut Sink, t: &TableMeta, new: &[String]) -> Result<()> {
    let state = format!("columns/{}", t.label());
    let old = sink.get_state(&state).await?;
    let new_v = Value::from(new.to_vec());
    if old.as_ref() == Some(&new_v) {
        return Ok(());
    }
    if old.is_none() {
        // first time we see the table (e.g. sync.dump=false): just remember its columns
        sink.put_state(&state, &new_v).await?;
        return Ok(());
    }
    tracing::info!(table = %t.label(), old = %old.unwrap_or_default(), new = %new_v, "column list changed; rewriting stored rows");
    sink.flush_data().await?;
    let mut start = Vec::new();
    let mut n = 0u64;
    loop {
        let (kvs, next) = sink.scan_prefix(&t.prefix, start).await?;
        for (k, v) in kvs {
            let Ok(Value::Object(mut row)) = serde_json::from_slice::<Value>(&v) else {
                continue;
            };
            let mut out = Row::new();
            for c in new {
                out.insert(c.clone(), row.remove(c).unwrap_or(Value::Null));
            }
            let nv = serde_json::to_vec(&Value::Object(out))?;
            if nv != v {
                sink.put(String::from_utf8(k)?, nv, None).await?;
                n += 1;
            }
        }
        match next {
            Some(s) => start = s,
            None => break,
        }
    }
    sink.put_state(&state, &new_v).await?;
    sink.flush_data().await?;
    tracing::info!(table = %t.label(), rows = n, "stored rows rewritten for the new column list");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn globs() {
        assert!(glob("*", "abc"));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("public.*", "public.t"));
        let f = Filter::new(&Tables {
            include: vec!["app.*".into(), "x".into()],
            exclude: vec!["app.tmp_*".into()],
        });
        assert!(f.matches("app", "users"));
        assert!(!f.matches("app", "tmp_1"));
        assert!(f.matches("other", "x"));
        assert!(!f.matches("other", "y"));
    }

    #[test]
    fn row_encoder_writes_what_the_row_map_serializes_to() {
        use serde_json::json;
        let tpl = KeyTemplate::parse("/{path}/{table}/{pk}", "p").unwrap();
        let t = TableMeta::new(&tpl, "s", "t", vec!["k2".into(), "id".into()]);
        let names = ["id", "k2", "na\"me", "ünï", "n", "j", "a", "f"];
        let enc = RowEncoder::new(&t, &names).unwrap();
        let values = vec![
            json!(42),
            json!("a/b,c"),
            json!("quote \" backslash \\ tab \t nl \n ctl \u{1} é 😀"),
            json!(18446744073709551615u64),
            json!(null),
            json!({"z": [1, 2.5, "x"], "a": null}),
            json!([true, false]),
            json!(-0.000123),
        ];
        let mut row = Row::new();
        for (n, v) in names.iter().zip(&values) {
            row.insert(n.to_string(), v.clone());
        }
        assert_eq!(
            String::from_utf8(enc.json(&values)).unwrap(),
            serde_json::to_string(&row).unwrap()
        );
        assert_eq!(enc.key(&t, &values).unwrap(), "/p/t/a%2Fb%2Cc,42");
        let empty =
            RowEncoder::new(&TableMeta::new(&tpl, "s", "t", vec![]), &[] as &[&str]).unwrap();
        assert_eq!(empty.json(&[]), b"{}");
        assert!(RowEncoder::new(&t, &["id"]).is_err(), "k2 is missing");
    }
}
