//! Keys of watched tables that the stream changed, each with a tag the stream sets (PostgreSQL:
//! the transaction id; MySQL: the binlog position), so that an incremental snapshot can tell
//! which rows of a chunk the stream has already replaced with a newer version.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// One change of a watched table by the stream.
#[derive(Debug, Clone)]
pub struct Touch {
    pub table: Arc<str>,
    /// `None`: every key of the table (TRUNCATE).
    pub key: Option<String>,
    pub tag: u64,
}

#[derive(Default)]
pub struct Touches {
    /// Watched table label → its prefix.
    watched: FxHashMap<Arc<str>, String>,
    tag: u64,
    list: Vec<Touch>,
}

impl Touches {
    pub fn watch(&mut self, tables: &[(String, String)]) {
        self.watched = tables
            .iter()
            .map(|(label, prefix)| (Arc::from(label.as_str()), prefix.clone()))
            .collect();
        self.list.retain(|t| self.watched.contains_key(&t.table));
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    pub fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }

    pub fn key(&mut self, table: &Arc<str>, key: &str) {
        if let Some((label, _)) = self.watched.get_key_value(table) {
            self.list.push(Touch {
                table: label.clone(),
                key: Some(key.to_string()),
                tag: self.tag,
            });
        }
    }

    pub fn prefix(&mut self, prefix: &str) {
        if let Some((label, _)) = self.watched.iter().find(|(_, p)| *p == prefix) {
            self.list.push(Touch {
                table: label.clone(),
                key: None,
                tag: self.tag,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Forgets the changes after the first `n` (a source transaction taken back).
    pub fn truncate(&mut self, n: usize) {
        self.list.truncate(n);
    }

    pub fn take(&mut self) -> Vec<Touch> {
        std::mem::take(&mut self.list)
    }
}
