//! Chunks of an incremental snapshot (see [`crate::source::snapshot`]): each chunk is read in
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT`, whose binlog position MariaDB gives exactly
//! (`binlog_snapshot_file` / `binlog_snapshot_position`): the chunk contains every transaction
//! before it and none after, so it is written when the stream stands there, and rows changed
//! by events after it are the stream's.

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;

use super::scan::Scanner;
use super::{classify, position_num};
use crate::config::Config;
use crate::retry::fatal;
use crate::source::snapshot::{Chunk, Visibility};
use crate::source::TableMeta;

pub struct Reader {
    scan: Scanner,
}

impl Reader {
    pub async fn open(cfg: &Config) -> Result<Reader> {
        let mut scan = Scanner::open(cfg).await?;
        scan.conn()
            .query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(|e| classify(e, "snapshot: isolation level"))?;
        Ok(Reader { scan })
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
    ) -> Result<Chunk> {
        let i = self
            .scan
            .index(label)
            .ok_or_else(|| anyhow!("snapshot: table {label} is not selected"))?;
        let q = self.scan.select(i, after, limit);
        let conn = self.scan.conn();
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(|e| classify(e, "snapshot: start transaction"))?;
        let status: Vec<(String, String)> = conn
            .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(|e| classify(e, "snapshot: binlog position"))?;
        let rows: Vec<mysql_async::Row> = conn
            .query(q)
            .await
            .map_err(|e| classify(e, &format!("snapshot: read {label}")))?;
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| classify(e, "snapshot: commit"))?;
        let get = |n: &str| status.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let (Some(file), Some(pos)) = (
            get("Binlog_snapshot_file"),
            get("Binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
        ) else {
            return Err(fatal(
                "incremental snapshot: the server has no binlog_snapshot_file/position (MariaDB's); delete the checkpoint to re-dump",
            ));
        };
        let high = position_num(&file, pos);
        let mut cursor = None;
        let rows = self.scan.decode(i, rows, &mut cursor)?;
        Ok(Chunk {
            last: rows.len() < limit,
            rows,
            next: cursor.map(|c| c.iter().map(|v| v.as_sql(false)).collect()),
            high,
            visibility: Visibility::Position(high),
        })
    }
}
