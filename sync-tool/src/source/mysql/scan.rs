//! The selected tables read in primary-key order, a chunk at a time (keyset pagination, each
//! chunk its own statement: no long transaction), mapped exactly as the dump maps them. For
//! `verify`, while the sync runs.

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

    /// Up to `limit` rows of table `i` after `cursor` (from the start if `None`), as etcd keys
    /// and values; fewer than `limit` means the table ends there.
    pub async fn chunk(
        &mut self,
        i: usize,
        cursor: &mut Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let (t, enc) = &self.tables[i];
        let label = t.meta.label();
        // the mapped columns, then the key columns as they are (for the next chunk's bound)
        let cols = t.cols.iter().map(dump_expr).collect::<Vec<_>>().join(", ");
        let key = t
            .meta
            .pk
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let marks = vec!["?"; t.meta.pk.len()].join(", ");
        let after = if cursor.is_some() {
            format!(" WHERE ({key}) > ({marks})")
        } else {
            String::new()
        };
        let q = format!(
            "SELECT {cols}, {key} FROM {}.{}{after} ORDER BY {key} LIMIT {limit}",
            quote_ident(&t.meta.schema),
            quote_ident(&t.meta.name)
        );
        let params = cursor.clone().unwrap_or_default();
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(q, params)
            .await
            .map_err(|e| classify(e, &format!("verify: read {label}")))?;
        let n = t.cols.len();
        let mut out = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(n);
        for r in rows {
            let mut vals = r.unwrap();
            if vals.len() != n + t.meta.pk.len() {
                return Err(anyhow!(
                    "verify {label}: {} values for {} columns",
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
