//! Incremental snapshot of tables added to the selection while the stream of the others goes
//! on (the watermark method): the table is read in primary-key chunks between transactions of
//! the stream; each chunk is read in a snapshot of the source whose place in the stream is
//! known ([`Visibility`]), and written when the stream has applied everything that snapshot
//! contains. Rows that the stream changed in a transaction the chunk's snapshot does not
//! contain are left out of the chunk: the stream's version, already applied, is newer. The
//! stream applies every change of the table from the moment it is selected, so a row is
//! either in a chunk or written by the stream (or both, the later version last). Progress (the
//! tables still to read, the last key written) goes into every checkpoint.

pub mod selection;

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::{mysql, postgres, TableMeta};
use crate::config::{Config, DbType};
use crate::metrics::METRICS;
use crate::sink::{Sink, Touch};

/// Checkpoint field holding the progress.
pub const FIELD: &str = "snapshot";

/// What the snapshot of a chunk contains of the stream.
#[derive(Debug, Clone)]
pub enum Visibility {
    /// PostgreSQL: the transaction snapshot (`txid_current_snapshot()`); changes are tagged with
    /// their transaction id.
    Xids { xmin: u64, xmax: u64, xip: Vec<u64> },
    /// MariaDB: the binlog position of the consistent snapshot; changes are tagged with the
    /// position of their event.
    Position(u64),
}

impl Visibility {
    /// Does the snapshot contain the change with this tag?
    pub fn contains(&self, tag: u64) -> bool {
        match self {
            Visibility::Position(p) => tag <= *p,
            Visibility::Xids { xmin, xmax, xip } => {
                if tag == 0 {
                    return false; // no transaction id known: assume the newer version
                }
                // the stream gives 32-bit ids: widen to the 64-bit id nearest to xmax (ids
                // within 2^31 of each other, as PostgreSQL compares them)
                let diff = (tag as u32).wrapping_sub(*xmax as u32) as i32;
                let full = (*xmax as i64 + diff as i64).max(0) as u64;
                full < *xmin || (full < *xmax && !xip.contains(&full))
            }
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {:.1} s, waiting for the stream {:.1} s, writes waiting for a read {:.1} s",
            self.read.as_secs_f64(),
            self.wait.as_secs_f64(),
            self.starved.as_secs_f64()
        )
    }
}

/// One chunk read from the source, waiting for the stream to reach `high`.
pub struct Chunk {
    pub rows: Vec<(String, Vec<u8>)>,
    /// Key of the last row (where the next chunk starts), as the driver writes it.
    pub next: Option<Vec<String>>,
    /// Fewer rows than asked: the table ends.
    pub last: bool,
    /// Stream position after which the chunk may be written.
    pub high: u64,
    pub visibility: Visibility,
}

enum Reader {
    Postgres(postgres::snapshot::Reader),
    Mysql(mysql::snapshot::Reader),
}

impl Reader {
    fn table(&self, label: &str) -> Option<TableMeta> {
        match self {
            Reader::Postgres(r) => r.table(label),
            Reader::Mysql(r) => r.table(label),
        }
    }

    /// `None`: not possible yet (try again shortly).
    async fn chunk(
        &mut self,
        label: &str,
        after: Option<&[String]>,
        limit: usize,
    ) -> Result<Option<Chunk>> {
        match self {
            Reader::Postgres(r) => r.chunk(label, after, limit).await,
            Reader::Mysql(r) => r.chunk(label, after, limit).await.map(Some),
        }
    }
}

/// Chunks read ahead of the one being written: reading the next chunks overlaps the wait for
/// the stream and the writes, so etcd does not idle between chunks. Memory stays bounded by
/// `(READ_AHEAD + 2) × sync.snapshot_chunk` rows.
const READ_AHEAD: usize = 2;

type ReadTask = tokio::task::JoinHandle<(Reader, Result<Option<Chunk>>, Duration)>;

/// Where the time of a table's snapshot went (in the progress lines).
#[derive(Default)]
struct Timing {
    /// Reading chunks (in the background).
    read: Duration,
    /// Chunks read, waiting for the stream to pass their position.
    wait: Duration,
    /// Nothing read yet when a chunk could have been written.
    starved: Duration,
}

/// A chunk being written, one etcd transaction's worth of rows per step, so that the stream's
/// transactions go to etcd between the slices instead of queueing behind the whole chunk.
struct Writing {
    rows: std::vec::IntoIter<(String, Vec<u8>)>,
    chunk: Chunk,
    n: u64,
    written: u64,
}

/// The incremental snapshots of one run of the stream.
pub struct Snapshots {
    reader: Option<Reader>,
    /// Tables still to read; the first is being read.
    tables: Vec<String>,
    current: Option<TableMeta>,
    /// Key of the last row written (in the checkpoints).
    cursor: Option<Vec<String>>,
    /// Key of the last row read (where the next read starts).
    read_cursor: Option<Vec<String>>,
    /// The table's last chunk has been read.
    read_done: bool,
    /// The next read, not before this instant.
    read_at: Option<Instant>,
    /// The read in progress (a task of its own: the stream and etcd work meanwhile).
    reading: Option<ReadTask>,
    /// Chunks read (with when the read ended), waiting for the stream, in key order.
    fetched: VecDeque<(Chunk, Instant)>,
    writing: Option<Writing>,
    /// A read failed: [`Snapshots::step`] returns it.
    read_error: Option<anyhow::Error>,
    /// etcd revision when the table's snapshot began, if its prefix held keys then (keys not
    /// written since are of rows that no longer exist).
    stale_rev: Option<i64>,
    started: bool,
    limit: usize,
    /// Where the stream is (between transactions).
    seen: u64,
    /// Changes of the tables to read that the chunks written so far did not contain.
    touched: Vec<Touch>,
    rows: u64,
    t0: Instant,
    last_log: Instant,
    timing: Timing,
    /// Since when nothing is to write while a read runs.
    starved_since: Option<Instant>,
}

impl Snapshots {
    pub fn none() -> Snapshots {
        Snapshots {
            reader: None,
            tables: Vec::new(),
            current: None,
            cursor: None,
            read_cursor: None,
            read_done: false,
            read_at: None,
            reading: None,
            fetched: VecDeque::new(),
            writing: None,
            read_error: None,
            stale_rev: None,
            started: false,
            limit: 1,
            seen: 0,
            touched: Vec::new(),
            rows: 0,
            t0: Instant::now(),
            last_log: Instant::now(),
            timing: Timing::default(),
            starved_since: None,
        }
    }

    /// The snapshots the checkpoint `cp` says are due (see [`selection::adopt`]), for a stream
    /// that starts at `position`. Call after the source's table selection is in effect (the
    /// publication altered), right before the stream starts.
    pub async fn resume(
        cfg: &Config,
        sink: &mut Sink,
        cp: &Value,
        position: u64,
    ) -> Result<Snapshots> {
        let mut s = Snapshots::none();
        s.seen = position;
        let Some(p) = cp.get(FIELD) else {
            sink.set_checkpoint_field(FIELD, None);
            sink.watch_tables(&[]);
            return Ok(s);
        };
        s.tables = p["tables"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        s.cursor = p["cursor"].as_array().map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        });
        s.stale_rev = p["stale_rev"].as_i64();
        s.started = p["started"].as_bool().unwrap_or(false);
        s.limit = cfg.sync.snapshot_chunk;
        if s.tables.is_empty() {
            sink.set_checkpoint_field(FIELD, None);
            return Ok(s);
        }
        s.reader = Some(match cfg.database.db_type {
            DbType::Postgres => Reader::Postgres(postgres::snapshot::Reader::open(cfg).await?),
            DbType::Mysql => Reader::Mysql(mysql::snapshot::Reader::open(cfg).await?),
        });
        s.watch(sink);
        s.save(sink);
        tracing::info!(tables = ?s.tables, resume_after = ?s.cursor, "incremental snapshot of added tables while streaming");
        Ok(s)
    }

    fn watch(&self, sink: &mut Sink) {
        let Some(r) = &self.reader else { return };
        let watched: Vec<(String, String)> = self
            .tables
            .iter()
            .filter_map(|l| r.table(l).map(|t| (t.label(), t.prefix.clone())))
            .collect();
        sink.watch_tables(&watched);
    }

    /// Puts the progress into the checkpoints from now on.
    fn save(&self, sink: &mut Sink) {
        let v = (!self.tables.is_empty()).then(|| {
            json!({
                "tables": self.tables,
                "cursor": self.cursor,
                "stale_rev": self.stale_rev,
                "started": self.started,
            })
        });
        sink.set_checkpoint_field(FIELD, v);
    }

    /// The stream has applied everything up to `position` once its current transaction ends.
    pub fn seen(&mut self, position: u64) {
        if position > self.seen {
            self.seen = position;
        }
    }

    fn can_read(&self) -> bool {
        self.current.is_some()
            && self.reading.is_none()
            && self.reader.is_some()
            && !self.read_done
            && self.fetched.len() < READ_AHEAD
    }

    /// The oldest chunk read is one the stream has passed: it may be written.
    fn chunk_ready(&self) -> bool {
        self.fetched
            .front()
            .is_some_and(|(c, _)| self.seen >= c.high)
    }

    fn due(&self) -> Option<Instant> {
        if self.tables.is_empty() {
            return None;
        }
        let now = Instant::now();
        if self.current.is_none()
            || self.read_error.is_some()
            || self.writing.is_some()
            || self.chunk_ready()
        {
            return Some(now);
        }
        if self.can_read() {
            return Some(self.read_at.unwrap_or(now));
        }
        None
    }

    /// Resolves when [`Snapshots::step`] has something to do without further stream events.
    pub async fn ready(&mut self) {
        let due = self.due();
        // Work due now must not go through the timer: a sleep ends on the timer's next tick
        // (1 ms), which would cap the snapshot at a slice per millisecond.
        let until_due = async move {
            match due {
                Some(at) if at <= Instant::now() => {}
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let read = match &mut self.reading {
            Some(h) => tokio::select! {
                r = h => Some(r),
                _ = until_due => None,
            },
            None => {
                until_due.await;
                None
            }
        };
        if let Some(r) = read {
            self.reading = None;
            self.read_ended(r);
        }
    }

    fn read_ended(
        &mut self,
        r: Result<(Reader, Result<Option<Chunk>>, Duration), tokio::task::JoinError>,
    ) {
        let (reader, r, took) = match r {
            Ok(x) => x,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.reader = Some(reader);
        self.timing.read += took;
        if let Some(t) = self.starved_since.take() {
            self.timing.starved += t.elapsed();
        }
        match r {
            Ok(Some(c)) => {
                self.read_at = None;
                self.read_done = c.last;
                if let Some(next) = &c.next {
                    self.read_cursor = Some(next.clone());
                }
                self.fetched.push_back((c, Instant::now()));
            }
            Ok(None) => self.read_at = Some(Instant::now() + Duration::from_millis(20)),
            Err(e) => self.read_error = Some(e),
        }
    }

    /// Does the next piece of work, if there is one now; call between source transactions.
    pub async fn step(&mut self, sink: &mut Sink) -> Result<()> {
        if self.reading.as_ref().is_some_and(|h| h.is_finished()) {
            let h = self.reading.take().expect("a read");
            self.read_ended(h.await);
        }
        if let Some(e) = self.read_error.take() {
            return Err(e);
        }
        if self.due().is_none_or(|at| at > Instant::now()) {
            return Ok(());
        }
        if self.current.is_none() {
            return self.start_table(sink).await;
        }
        if self.can_read() && self.read_at.is_none_or(|at| at <= Instant::now()) {
            self.start_read();
        }
        if self.writing.is_none() && self.chunk_ready() {
            let (mut chunk, fetched) = self.fetched.pop_front().expect("a chunk");
            self.timing.wait += fetched.elapsed();
            let rows = std::mem::take(&mut chunk.rows);
            self.writing = Some(Writing {
                n: rows.len() as u64,
                rows: rows.into_iter(),
                chunk,
                written: 0,
            });
        }
        if self.writing.is_some() {
            self.write_slice(sink).await?;
        }
        if self.writing.is_none() && self.fetched.is_empty() && self.reading.is_some() {
            self.starved_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn start_read(&mut self) {
        let (Some(mut r), Some(t)) = (self.reader.take(), self.current.as_ref()) else {
            return;
        };
        let (label, after, limit) = (t.label(), self.read_cursor.clone(), self.limit);
        self.reading = Some(tokio::spawn(async move {
            let t = Instant::now();
            let c = r.chunk(&label, after.as_deref(), limit).await;
            (r, c, t.elapsed())
        }));
    }

    async fn start_table(&mut self, sink: &mut Sink) -> Result<()> {
        let Some(label) = self.tables.first().cloned() else {
            return Ok(());
        };
        let Some(t) = self.reader.as_ref().and_then(|r| r.table(&label)) else {
            // no longer selected (the selection was adopted before): skip it
            self.next_table(sink);
            return Ok(());
        };
        if !self.started {
            self.stale_rev = if sink.prefix_is_empty(&t.prefix).await? {
                None
            } else {
                Some(sink.revision().await?)
            };
            self.started = true;
            self.cursor = None;
            self.save(sink);
            tracing::info!(table = %label, "incremental snapshot: table started");
        } else {
            tracing::info!(table = %label, after = ?self.cursor, "incremental snapshot: table resumed");
        }
        self.current = Some(t);
        self.read_cursor = self.cursor.clone();
        self.read_done = false;
        self.read_at = None;
        self.rows = 0;
        self.t0 = Instant::now();
        self.last_log = Instant::now();
        self.timing = Timing::default();
        Ok(())
    }

    /// Writes the next slice of the chunk being written: its rows that the stream did not
    /// change since the chunk's snapshot (looked at again before every slice, since the stream
    /// goes on between them).
    async fn write_slice(&mut self, sink: &mut Sink) -> Result<()> {
        let Some(t) = self.current.clone() else {
            return Ok(());
        };
        let Some(w) = self.writing.as_mut() else {
            return Ok(());
        };
        self.touched.extend(sink.take_touches());
        let mut newer: HashSet<&str> = HashSet::new();
        let mut all = false;
        for touch in &self.touched {
            if &*touch.table != t.label_str() || w.chunk.visibility.contains(touch.tag) {
                continue;
            }
            match &touch.key {
                Some(k) => {
                    newer.insert(k.as_str());
                }
                None => all = true,
            }
        }
        let slice = sink.data_ops_limit();
        for (k, v) in w.rows.by_ref().take(slice) {
            if all || newer.contains(k.as_str()) {
                continue;
            }
            sink.put_snapshot_row(k, v, t.label_str()).await?;
            w.written += 1;
        }
        drop(newer);
        if w.rows.len() > 0 {
            return Ok(());
        }
        let Some(w) = self.writing.take() else {
            return Ok(());
        };
        let c = w.chunk;
        // a later chunk's snapshot contains what this one contains
        let vis = c.visibility;
        self.touched.retain(|x| !vis.contains(x.tag));
        METRICS.add_dump_rows(t.label_str(), w.written);
        self.rows += w.n;
        if let Some(next) = c.next {
            self.cursor = Some(next);
        }
        if self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            let secs = self.t0.elapsed().as_secs_f64().max(1e-6);
            tracing::info!(table = %t.label(), rows = self.rows, rows_per_s = (self.rows as f64 / secs) as u64, timing = %self.timing, "incremental snapshot: progress");
        }
        if c.last {
            self.finish_table(sink, &t).await?;
        } else {
            self.save(sink);
            sink.recommit();
        }
        Ok(())
    }

    async fn finish_table(&mut self, sink: &mut Sink, t: &TableMeta) -> Result<()> {
        if let Some(rev) = self.stale_rev {
            let removed = sink.remove_stale(&t.prefix, rev).await?;
            if removed > 0 {
                METRICS.stale_keys_removed.add(removed);
                tracing::info!(table = %t.label(), removed, "removed keys of rows that no longer exist");
            }
        }
        let secs = self.t0.elapsed().as_secs_f64().max(1e-6);
        tracing::info!(table = %t.label(), rows = self.rows, rows_per_s = (self.rows as f64 / secs) as u64, secs = format!("{secs:.2}"), timing = %self.timing, "incremental snapshot: table done");
        self.next_table(sink);
        Ok(())
    }

    fn next_table(&mut self, sink: &mut Sink) {
        if !self.tables.is_empty() {
            self.tables.remove(0);
        }
        self.current = None;
        self.cursor = None;
        self.stale_rev = None;
        self.started = false;
        self.read_cursor = None;
        self.read_done = false;
        self.read_at = None;
        self.fetched.clear();
        self.writing = None;
        self.watch(sink);
        self.save(sink);
        sink.recommit();
        if self.tables.is_empty() {
            self.reader = None;
            self.touched.clear();
            tracing::info!("incremental snapshot: all added tables are in etcd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility() {
        let v = Visibility::Xids {
            xmin: 100,
            xmax: 105,
            xip: vec![102],
        };
        assert!(v.contains(99));
        assert!(v.contains(101));
        assert!(!v.contains(102), "in progress");
        assert!(v.contains(104));
        assert!(!v.contains(105));
        assert!(!v.contains(0), "unknown");
        // 32-bit ids against an epoch-extended snapshot
        let e = 3u64 << 32;
        let v = Visibility::Xids {
            xmin: e + 10,
            xmax: e + 20,
            xip: vec![],
        };
        assert!(v.contains(15));
        assert!(!v.contains(25));
        assert!(v.contains(0xffff_fff0), "previous epoch");
        let p = Visibility::Position(500);
        assert!(p.contains(500) && !p.contains(501));
    }
}
