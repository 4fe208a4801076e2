//! Where the export comes from: files (plain, gzip, rotated sets), standard input, or a
//! Kafka topic. Each hands its lines, one report each, to a callback.

pub mod files;
pub mod kafka;

use crate::analysis::Origin;

/// What reading told the verdict besides the lines.
#[derive(Default)]
pub struct ReadInfo {
    pub sources: Vec<String>,
    /// File modification times (ms since the epoch).
    pub mtimes_ms: Vec<i64>,
    /// Non-fatal trouble (a gzip stream that ends early, a Kafka partition that stopped).
    pub notes: Vec<String>,
}

pub type LineFn<'a> = dyn FnMut(&[u8], &Origin<'_>) + 'a;
