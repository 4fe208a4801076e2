//! Either driver's [`Scanner`](super::postgres::scan::Scanner): the selected tables of the
//! source read in primary-key order, chunk by chunk, as etcd keys and values.

use anyhow::Result;

use super::{mysql, postgres, TableMeta};
use crate::config::{Config, DbType};

pub enum Scanner {
    Postgres(postgres::scan::Scanner),
    Mysql(mysql::scan::Scanner),
}

/// Where the next chunk of a table starts.
pub enum Cursor {
    Postgres(postgres::scan::Cursor),
    Mysql(mysql::scan::Cursor),
}

impl Scanner {
    pub async fn open(cfg: &Config) -> Result<Scanner> {
        Ok(match cfg.database.db_type {
            DbType::Postgres => Scanner::Postgres(postgres::scan::Scanner::open(cfg).await?),
            DbType::Mysql => Scanner::Mysql(mysql::scan::Scanner::open(cfg).await?),
        })
    }

    pub fn tables(&self) -> Vec<TableMeta> {
        match self {
            Scanner::Postgres(s) => s.tables().cloned().collect(),
            Scanner::Mysql(s) => s.tables().cloned().collect(),
        }
    }

    /// Up to `limit` rows of table `i` after `cursor` (`None`: from the start), which moves on;
    /// fewer than `limit` rows: the table ends.
    pub async fn chunk(
        &mut self,
        i: usize,
        cursor: &mut Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        match self {
            Scanner::Postgres(s) => {
                let mut c = match cursor.take() {
                    Some(Cursor::Postgres(c)) => Some(c),
                    _ => None,
                };
                let rows = s.chunk(i, &mut c, limit).await?;
                *cursor = c.map(Cursor::Postgres);
                Ok(rows)
            }
            Scanner::Mysql(s) => {
                let mut c = match cursor.take() {
                    Some(Cursor::Mysql(c)) => Some(c),
                    _ => None,
                };
                let rows = s.chunk(i, &mut c, limit).await?;
                *cursor = c.map(Cursor::Mysql);
                Ok(rows)
            }
        }
    }
}
