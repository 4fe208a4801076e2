//! What the server's major supports (PostgreSQL 10 to 18), and the replication commands and
//! catalog queries written for it.

use anyhow::Result;

use super::quote_ident;
use crate::retry::fatal;

pub const OLDEST: i32 = 10;

#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// server_version_num, e.g. 100023 or 180004
    pub num: i32,
}

impl Features {
    /// Refuses servers before 10 (no logical replication, no pgoutput).
    pub fn new(num: i32) -> Result<Features> {
        if num < OLDEST * 10_000 {
            return Err(fatal(format!(
                "PostgreSQL {num} is too old: logical replication with pgoutput needs {OLDEST} or newer"
            )));
        }
        Ok(Features { num })
    }

    pub fn major(&self) -> i32 {
        self.num / 10_000
    }

    /// pgoutput sends TRUNCATE (11+).
    pub fn truncate(&self) -> bool {
        self.num >= 110_000
    }

    /// Streamed in-progress transactions: pgoutput protocol 2 with `streaming 'on'` (14+).
    pub fn streaming(&self) -> bool {
        self.num >= 140_000
    }

    /// pg_attribute.attgenerated (12+; no generated columns before).
    pub fn generated_columns(&self) -> bool {
        self.num >= 120_000
    }

    /// pg_replication_slots.wal_status (13+).
    pub fn slot_wal_status(&self) -> bool {
        self.num >= 130_000
    }

    /// Publication option `publish_via_partition_root` (13+): a partitioned table's changes
    /// are published under its own name. Before, a partitioned table cannot be published.
    pub fn partition_root(&self) -> bool {
        self.num >= 130_000
    }

    /// CREATE_REPLICATION_SLOT: the option list in parentheses is 15+; the keyword form
    /// (EXPORT_SNAPSHOT / NOEXPORT_SNAPSHOT) works from 10 to 18.
    pub fn create_slot(&self, slot: &str, export_snapshot: bool) -> String {
        let slot = quote_ident(slot);
        if self.num >= 150_000 {
            let snap = if export_snapshot { "export" } else { "nothing" };
            format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT '{snap}')")
        } else {
            let snap = if export_snapshot {
                "EXPORT_SNAPSHOT"
            } else {
                "NOEXPORT_SNAPSHOT"
            };
            format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput {snap}")
        }
    }

    /// START_REPLICATION from the slot's confirmed position (0/0) with the pgoutput options
    /// of this major (protocol 1 before 14, which also refuses unknown options).
    pub fn start_replication(&self, slot: &str, publication: &str) -> String {
        let pubname = publication.replace('\'', "''");
        let opts = if self.streaming() {
            ", streaming 'on'"
        } else {
            ""
        };
        format!(
            "START_REPLICATION SLOT {} LOGICAL 0/0 (proto_version '{}', publication_names '{}'{opts})",
            quote_ident(slot),
            if self.streaming() { 2 } else { 1 },
            quote_ident(&pubname)
        )
    }

    /// One start-up line that says what this major cannot do.
    pub fn log(&self, version: &str) {
        let proto = if self.streaming() { 2 } else { 1 };
        if self.streaming() {
            tracing::info!(
                server = %version,
                pgoutput_protocol = proto,
                "PostgreSQL {}: streamed in-progress transactions on (a large transaction arrives while it runs and is spooled to a temporary file until its commit)",
                self.major()
            );
        } else {
            tracing::warn!(
                server = %version,
                pgoutput_protocol = proto,
                "PostgreSQL {}: no streamed in-progress transactions before 14 (the server decodes a large transaction whole, spilling to its disk, and sends it after its commit){}{}",
                self.major(),
                if self.truncate() { "" } else { "; TRUNCATE is not replicated before PostgreSQL 11: a TRUNCATE on the source leaves its rows in etcd until the next dump (use DELETE, or drop the slot to re-dump)" },
                if self.partition_root() { "" } else { "; partitioned tables cannot be published before 13 (select their partitions)" },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_per_major() {
        assert!(Features::new(90_624).is_err());
        let v10 = Features::new(100_023).unwrap();
        assert_eq!(
            v10.create_slot("s", true),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput EXPORT_SNAPSHOT"
        );
        assert_eq!(
            v10.start_replication("s", "p'q"),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/0 (proto_version '1', publication_names '\"p''q\"')"
        );
        assert!(!v10.truncate() && !v10.generated_columns());
        let v18 = Features::new(180_004).unwrap();
        assert_eq!(
            v18.create_slot("s", false),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'nothing')"
        );
        assert!(v18
            .start_replication("s", "p")
            .ends_with("(proto_version '2', publication_names '\"p\"', streaming 'on')"));
        assert_eq!(v18.major(), 18);
    }
}
