//! The selected tables read in primary-key order, a chunk at a time (keyset pagination, each
//! chunk its own statement: no long transaction, no snapshot held), mapped exactly as the dump
//! maps them. For `verify`, while the sync runs, and for incremental snapshots.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{connect_sql, load_tables, quote_ident, PgTable, TypeCache};
use crate::config::Config;
use crate::source::RowEncoder;
use crate::value::pg_text;

pub struct Scanner {
    sql: Client,
    tables: Vec<Table>,
}

struct Table {
    t: PgTable,
    enc: RowEncoder,
    /// Positions of the primary-key columns among the columns, and their SQL types.
    pk: Vec<(usize, String)>,
}

/// The text of the last row's primary-key values.
pub type Cursor = Vec<String>;

/// `'text'` as an SQL string literal (standard_conforming_strings is on since 9.1).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Scanner {
    pub async fn open(cfg: &Config) -> Result<Scanner> {
        let sql = connect_sql(cfg).await?;
        let mut types = TypeCache::default();
        let mut tables = Vec::new();
        for t in load_tables(cfg, &sql, &mut types).await? {
            let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            let enc = RowEncoder::new(&t.meta, &names)?;
            let rel = format!(
                "{}.{}",
                quote_ident(&t.meta.schema),
                quote_ident(&t.meta.name)
            );
            let mut pk = Vec::new();
            for name in &t.meta.pk {
                let ty: String = sql
                    .query_one(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2",
                        &[&rel, name],
                    )
                    .await
                    .with_context(|| format!("type of {}.{name}", t.meta.label()))?
                    .get(0);
                let pos = t
                    .columns
                    .iter()
                    .position(|c| &c.name == name)
                    .ok_or_else(|| {
                        anyhow!("{}: key column {name} not replicated", t.meta.label())
                    })?;
                pk.push((pos, ty));
            }
            tables.push(Table { t, enc, pk });
        }
        Ok(Scanner { sql, tables })
    }

    pub fn tables(&self) -> impl Iterator<Item = &crate::source::TableMeta> {
        self.tables.iter().map(|t| &*t.t.meta)
    }

    /// Index of the table with this label.
    pub fn index(&self, label: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.t.meta.label_str() == label)
    }

    pub fn client(&self) -> &Client {
        &self.sql
    }

    /// Up to `limit` rows of table `i` after `cursor` (from the start if `None`), as etcd keys
    /// and values; fewer than `limit` means the table ends there.
    pub async fn chunk(
        &self,
        i: usize,
        cursor: &mut Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let q = self.select(i, cursor.as_ref(), limit);
        let label = self.tables[i].t.meta.label();
        let msgs = self
            .sql
            .simple_query(&q)
            .await
            .with_context(|| format!("verify: read {label}"))?;
        self.decode(i, &msgs, cursor)
    }

    /// The SELECT of up to `limit` rows of table `i` after `cursor`, in primary-key order.
    pub fn select(&self, i: usize, cursor: Option<&Cursor>, limit: usize) -> String {
        let tb = &self.tables[i];
        let cols =
            tb.t.columns
                .iter()
                .map(|c| quote_ident(&c.name))
                .collect::<Vec<_>>()
                .join(", ");
        let key = tb
            .pk
            .iter()
            .map(|(p, _)| quote_ident(&tb.t.columns[*p].name))
            .collect::<Vec<_>>()
            .join(", ");
        let after = match cursor {
            None => String::new(),
            Some(c) => {
                let vals = c
                    .iter()
                    .zip(&tb.pk)
                    .map(|(v, (_, ty))| format!("{}::{ty}", literal(v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(" WHERE ({key}) > ({vals})")
            }
        };
        format!(
            "SELECT {cols} FROM {}.{}{after} ORDER BY {key} LIMIT {limit}",
            quote_ident(&tb.t.meta.schema),
            quote_ident(&tb.t.meta.name)
        )
    }

    /// The rows of [`Scanner::select`]'s answer (the `Row` messages among `msgs`) as etcd keys
    /// and values; `cursor` moves to the last of them.
    pub fn decode(
        &self,
        i: usize,
        msgs: &[SimpleQueryMessage],
        cursor: &mut Option<Cursor>,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let tb = &self.tables[i];
        let label = tb.t.meta.label();
        let mut out = Vec::with_capacity(msgs.len());
        let mut values = Vec::with_capacity(tb.t.columns.len());
        let mut last = None;
        for m in msgs {
            let SimpleQueryMessage::Row(r) = m else {
                continue;
            };
            values.clear();
            for (j, c) in tb.t.columns.iter().enumerate() {
                values.push(match r.get(j) {
                    None => Value::Null,
                    Some(text) => pg_text(&c.kind, text)
                        .map_err(|e| anyhow!("table {label} column {}: {e}", c.name))?,
                });
            }
            out.push((tb.enc.key(&tb.t.meta, &values)?, tb.enc.json(&values)));
            last = Some(r);
        }
        if let Some(r) = last {
            *cursor = Some(
                tb.pk
                    .iter()
                    .map(|(p, _)| r.get(*p).unwrap_or_default().to_string())
                    .collect(),
            );
        }
        Ok(out)
    }
}
