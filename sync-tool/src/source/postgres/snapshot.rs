//! Chunks of an incremental snapshot (see [`crate::source::snapshot`]): one round trip runs
//! `BEGIN REPEATABLE READ; txid_current_snapshot(); SELECT <chunk>; pg_current_wal_insert_lsn();
//! COMMIT; pg_logical_emit_message(false, …)`. Every transaction the chunk contains committed
//! before the insert position read after it (`high`); the transactions it does not contain are
//! named by the snapshot (changes of those are the stream's). The non-transactional message
//! reaches the stream right after everything before it, so the stream passes `high` at once
//! even when the source is idle.

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::SimpleQueryMessage;

use super::parse_lsn;
use super::scan::Scanner;
use crate::config::Config;
use crate::source::snapshot::{Chunk, Visibility};
use crate::source::TableMeta;

pub struct Reader {
    scan: Scanner,
    /// `xmax` of a snapshot taken after the publication took the tables: a chunk is read only
    /// in a snapshot whose `xmin` is past it, i.e. that contains every transaction which ran
    /// while the publication did not yet include the table (the stream missed their changes).
    horizon: u64,
}

/// `xmin:xmax:xip,…` → the visibility of a chunk.
pub fn parse_snapshot(s: &str) -> Result<Visibility> {
    let mut it = s.split(':');
    let (Some(a), Some(b), Some(c)) = (it.next(), it.next(), it.next()) else {
        bail!("unexpected txid_current_snapshot() {s:?}");
    };
    let xip = c
        .split(',')
        .filter(|x| !x.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(Visibility::Xids {
        xmin: a.parse()?,
        xmax: b.parse()?,
        xip,
    })
}

impl Reader {
    pub async fn open(cfg: &Config) -> Result<Reader> {
        let scan = Scanner::open(cfg).await?;
        let horizon: String = scan
            .client()
            .query_one(
                "SELECT txid_snapshot_xmax(txid_current_snapshot())::text",
                &[],
            )
            .await
            .context("snapshot: horizon")?
            .get(0);
        Ok(Reader {
            scan,
            horizon: horizon.parse()?,
        })
    }

    pub fn table(&self, label: &str) -> Option<TableMeta> {
        let i = self.scan.index(label)?;
        self.scan.tables().nth(i).cloned()
    }

    pub async fn chunk(
        &mut self,
        label: &str,
        after: Option<&[String]>,
        limit: usize,
    ) -> Result<Option<Chunk>> {
        let i = self
            .scan
            .index(label)
            .ok_or_else(|| anyhow!("snapshot: table {label} is not selected"))?;
        let mut cursor = after.map(<[String]>::to_vec);
        let q = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current_snapshot()::text; {}; \
             SELECT pg_current_wal_insert_lsn()::text; COMMIT; \
             SELECT pg_logical_emit_message(false, 'sync-tool-watermark', '')::text",
            self.scan.select(i, cursor.as_ref(), limit)
        );
        let msgs = self
            .scan
            .client()
            .simple_query(&q)
            .await
            .with_context(|| format!("snapshot: read {label}"))?;
        // the answers of the statements, split at their CommandComplete
        let mut parts: Vec<Vec<SimpleQueryMessage>> = vec![Vec::new()];
        for m in msgs {
            let end = matches!(m, SimpleQueryMessage::CommandComplete(_));
            parts.last_mut().expect("one part").push(m);
            if end {
                parts.push(Vec::new());
            }
        }
        let text = |p: usize| -> Result<String> {
            parts
                .get(p)
                .and_then(|p| {
                    p.iter().find_map(|m| match m {
                        SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
                        _ => None,
                    })
                })
                .ok_or_else(|| anyhow!("snapshot: statement {p} returned no value"))
        };
        let visibility = parse_snapshot(&text(1)?)?;
        if let Visibility::Xids { xmin, .. } = &visibility {
            if *xmin < self.horizon {
                return Ok(None);
            }
        }
        let high = parse_lsn(&text(3)?)?;
        let rows = self.scan.decode(i, &parts[2], &mut cursor)?;
        Ok(Some(Chunk {
            last: rows.len() < limit,
            rows,
            next: cursor,
            high,
            visibility,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn snapshots() {
        let Visibility::Xids { xmin, xmax, xip } = parse_snapshot("10:20:12,15").unwrap() else {
            panic!()
        };
        assert_eq!((xmin, xmax, xip), (10, 20, vec![12, 15]));
        assert!(parse_snapshot("10:20:").is_ok());
        assert!(parse_snapshot("x").is_err());
    }
}
