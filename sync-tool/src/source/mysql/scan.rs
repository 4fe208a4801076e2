//! The selected tables read in primary-key order, a chunk at a time (keyset pagination, each
//! chunk its own statement: no long transaction), mapped exactly as the dump maps them. For
//! `verify`, while the sync runs, and for incremental snapshots.

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};

use super::types::{dump_expr, map_value, quote_ident};
use super::{classify, connect, load_tables, MyTable};
use crate::config::Config;
use crate::source::RowEncoder;

pub struct Scanner {
    conn: Conn,
    tables: Vec<(MyTable, RowEncoder)>,
}

/// The last row's primary-key values, as the server sent them.
pub type Cursor = Vec<My>;

impl Scanner {
    pub async fn open(cfg: &Config) -> Result<Scanner> {
        let mut conn = connect(cfg).await?;
        let mut tables = Vec::new();
        for t in load_tables(cfg, &mut conn).await? {
            let names: Vec<&str> = t.cols.iter().map(|c| c.name.as_str()).collect();
            let enc = RowEncoder::new(&t.meta, &names)?;
            tables.push((t, enc));
        }
        Ok(Scanner { conn, tables })
    }

    pub fn tables(&self) -> impl Iterator<Item = &crate::source::TableMeta> {
        self.tables.iter().map(|(t, _)| &*t.meta)
    }

    /// Index of the table with this label.
    pub fn index(&self, label: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|(t, _)| t.meta.label_str() == label)
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Up to `limit` rows of table `i` after `cursor` (from the start if `None`), as etcd keys
    /// and values; fewer than `limit` means the table ends there.
    pub async fn chunk(
        &mut self,
        i: usize,
        cursor: &mut Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let marks = cursor.as_ref().map(|c| vec!["?".to_string(); c.len()]);
        let q = self.select(i, marks.as_deref(), limit);
        let params = cursor.clone().unwrap_or_default();
        let label = self.tables[i].0.meta.label();
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(q, params)
            .await
            .map_err(|e| classify(e, &format!("verify: read {label}")))?;
        self.decode(i, rows, cursor)
    }

    /// The SELECT of up to `limit` rows of table `i` whose key is after the SQL expressions
    /// `after` (`?` marks, literals; `None`: from the start), in primary-key order: the mapped
    /// columns, then the key columns as they are.
    pub fn select(&self, i: usize, after: Option<&[String]>, limit: usize) -> String {
        let t = &self.tables[i].0;
        let cols = t.cols.iter().map(dump_expr).collect::<Vec<_>>().join(", ");
        let key = t
            .meta
            .pk
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let after = match after {
            Some(v) => format!(" WHERE ({key}) > ({})", v.join(", ")),
            None => String::new(),
        };
        format!(
            "SELECT {cols}, {key} FROM {}.{}{after} ORDER BY {key} LIMIT {limit}",
            quote_ident(&t.meta.schema),
            quote_ident(&t.meta.name)
        )
    }

    /// The rows of [`Scanner::select`]'s answer as etcd keys and values; `cursor` moves to the
    /// key of the last of them.
    pub fn decode(
        &self,
        i: usize,
        rows: Vec<mysql_async::Row>,
        cursor: &mut Option<Cursor>,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let (t, enc) = &self.tables[i];
        let label = t.meta.label();
        let n = t.cols.len();
        let mut out = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(n);
        for r in rows {
            let mut vals = r.unwrap();
            if vals.len() != n + t.meta.pk.len() {
                return Err(anyhow!(
                    "read {label}: {} values for {} columns",
                    vals.len(),
                    n
                ));
            }
            let keyvals = vals.split_off(n);
            values.clear();
            for (c, v) in t.cols.iter().zip(vals) {
                values.push(
                    map_value(&c.kind, v)
                        .map_err(|e| anyhow!("table {label} column {}: {e}", c.name))?,
                );
            }
            out.push((enc.key(&t.meta, &values)?, enc.json(&values)));
            *cursor = Some(keyvals);
        }
        Ok(out)
    }
}
