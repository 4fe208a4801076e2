//! etcd sink: batches of puts/deletes written as etcd transactions of at most
//! `sync.max_txn_ops` operations and `sync.max_txn_bytes` bytes, handed to a writer task that
//! keeps several of them in flight ([`writer`]). A checkpoint is written in an etcd transaction
//! together with data, and only once every change before it is in etcd; every transaction
//! carries a compare on the HA leader key (fencing: a deposed leader's writes fail). Writes
//! are idempotent (whole-row puts, deletes), so a source transaction that had to be split into
//! several etcd transactions converges when it is replayed after a crash.

#[cfg(test)]
mod tests;
mod touches;
mod writer;

pub use touches::Touch;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Certificate, Client, ConnectOptions, DeleteOptions, GetOptions, Identity, TlsOptions, TxnOp,
};
use indexmap::IndexMap;
use serde_json::Value;

use writer::{key_hash, Batch, Failure, Writer, WriterState};

use crate::config::Config;

/// Overhead counted per operation on top of key and value bytes.
const OP_OVERHEAD: usize = 32;

pub async fn connect(cfg: &Config) -> Result<Client> {
    let e = &cfg.etcd;
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(e.dial_timeout)
        .with_timeout(e.request_timeout)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if e.tls.enabled {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &e.tls.trusted_ca_path {
            let pem = std::fs::read(ca)
                .with_context(|| format!("etcd.tls.trusted_ca_path {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&e.tls.certificate_path, &e.tls.key_path) {
            let cert = std::fs::read(c)
                .with_context(|| format!("etcd.tls.certificate_path {}", c.display()))?;
            let key =
                std::fs::read(k).with_context(|| format!("etcd.tls.key_path {}", k.display()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(tls);
    }
    let endpoints: Vec<String> = e
        .endpoints
        .iter()
        .map(|ep| {
            if ep.contains("://") {
                ep.clone()
            } else if e.tls.enabled {
                format!("https://{ep}")
            } else {
                format!("http://{ep}")
            }
        })
        .collect();
    let client = tokio::time::timeout(e.dial_timeout, Client::connect(endpoints, Some(opts)))
        .await
        .map_err(|_| anyhow!("etcd: connect timed out after {:?}", e.dial_timeout))?
        .context("etcd: connect")?;
    Ok(client)
}

/// The key one past every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Error when the fence compare failed: another instance is the leader now.
#[derive(Debug)]
pub struct LostLeadership;
impl std::fmt::Display for LostLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "leadership lost: another sync-tool instance is active (etcd fence compare failed)"
        )
    }
}
impl std::error::Error for LostLeadership {}

#[derive(Clone, Debug)]
pub struct Fence {
    pub key: Vec<u8>,
    pub rev: i64,
}

enum Op {
    Put(Vec<u8>),
    Delete,
}

/// Batches queued for the writer task on top of the ones in flight: the source builds the
/// next batch while etcd works.
const PIPELINE_QUEUE: usize = 1;

type BufferedOp = (Op, Option<std::sync::Arc<str>>);
type Buffer = IndexMap<String, BufferedOp, rustc_hash::FxBuildHasher>;

pub struct Sink {
    client: Client,
    checkpoint_key: String,
    state_path: String,
    max_ops: usize,
    max_bytes: usize,
    /// The next transaction's operations, by key (a later operation on a key replaces the
    /// earlier one: etcd refuses a transaction that names a key twice).
    ops: Buffer,
    bytes: usize,
    pending_checkpoint: Option<(Value, Option<Instant>)>,
    /// Commit time (unix seconds) of the last applied source transaction, for lag metrics.
    pending_commit_unix: Option<f64>,
    /// Table labels interned for the per-table metrics.
    labels: rustc_hash::FxHashMap<String, std::sync::Arc<str>>,
    // writer task
    tx: Option<tokio::sync::mpsc::Sender<Batch>>,
    state: tokio::sync::watch::Receiver<WriterState>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Sequence number of the last batch handed to the writer.
    submitted: u64,
    /// Sequence number of the last durable checkpoint handed out by `take_durable`.
    acked: u64,
    /// Undo data of the open source transaction, see [`Sink::begin_txn`].
    savepoint: Option<Savepoint>,
    /// Fields put into every checkpoint (the table selection, an incremental snapshot's progress).
    extras: serde_json::Map<String, Value>,
    /// The last checkpoint of a source transaction (see [`Sink::recommit`]).
    last_checkpoint: Option<Value>,
    /// Changes of the tables an incremental snapshot is reading.
    touches: touches::Touches,
}

/// What the buffer held when a source transaction began: its length (the transaction's new
/// keys come after it) and the operations the transaction replaced, so that the transaction can
/// be taken out again while none of it has been handed to the writer.
#[derive(Default)]
struct Savepoint {
    len: usize,
    bytes: usize,
    replaced: Vec<(usize, BufferedOp)>,
    /// Part of the transaction was handed to the writer: it can no longer be taken back.
    flushed: bool,
    /// Changes of watched tables recorded before the transaction.
    touches: usize,
}

impl Sink {
    pub fn new(client: Client, cfg: &Config, fence: Option<Fence>) -> Sink {
        let (tx, rx) = tokio::sync::mpsc::channel(PIPELINE_QUEUE);
        let (stx, srx) = tokio::sync::watch::channel(WriterState::default());
        let writer = Writer {
            client: client.clone(),
            fence,
            checkpoint_key: format!("{}/checkpoint", cfg.state_path()).into_bytes(),
            nonce_key: format!("{}/writer", cfg.state_path()).into_bytes(),
            depth: cfg.sync.txns_in_flight,
        };
        let task = tokio::spawn(writer.run(rx, stx));
        Sink {
            client,
            checkpoint_key: format!("{}/checkpoint", cfg.state_path()),
            state_path: cfg.state_path(),
            max_ops: cfg.sync.max_txn_ops,
            max_bytes: cfg.sync.max_txn_bytes,
            ops: Buffer::default(),
            bytes: 0,
            pending_checkpoint: None,
            pending_commit_unix: None,
            labels: Default::default(),
            tx: Some(tx),
            state: srx,
            task: Some(task),
            submitted: 0,
            acked: 0,
            savepoint: None,
            extras: Default::default(),
            last_checkpoint: None,
            touches: Default::default(),
        }
    }

    /// Data operations that fit one etcd transaction (with the checkpoint).
    pub fn data_ops_limit(&self) -> usize {
        // one op for the checkpoint
        self.max_ops - 1
    }

    /// Transactions handed to the writer and not yet committed.
    pub fn in_flight(&self) -> u64 {
        self.submitted - self.state.borrow().committed
    }

    /// The writer's failure, if any (nothing is written after it).
    pub fn check(&self) -> Result<()> {
        match self.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn failure(&self) -> Option<anyhow::Error> {
        self.state.borrow().failed.as_ref().map(Failure::to_error)
    }

    /// Hands a transaction to the writer task (waits only while the queue is full).
    /// `keys`: hashes of the keys `ops` name, `None` if not known (the transaction then
    /// waits for all before it and is sent alone).
    async fn submit(
        &mut self,
        ops: Vec<TxnOp>,
        keys: Option<Vec<u64>>,
        rows: u64,
        per_table: Vec<(std::sync::Arc<str>, u64)>,
        checkpoint: Option<Value>,
        commit_unix: Option<f64>,
    ) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| anyhow!("etcd writer stopped"))?;
        self.submitted += 1;
        let b = Batch {
            seq: self.submitted,
            ops,
            keys,
            rows,
            per_table,
            checkpoint,
            commit_unix,
        };
        if tx.send(b).await.is_err() {
            return Err(self
                .failure()
                .unwrap_or_else(|| anyhow!("etcd writer stopped")));
        }
        // The runtime has one thread and a source with data at hand never waits: let the
        // writer send this transaction and take etcd's answers now, not when the source runs dry.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Waits until every transaction handed to the writer is committed (or one failed).
    pub async fn drain(&mut self) -> Result<()> {
        let target = self.submitted;
        let r = self
            .state
            .wait_for(|s| (s.committed >= target && !s.checkpoint_unwritten) || s.failed.is_some())
            .await
            .map(|s| s.failed.as_ref().map(Failure::to_error));
        match r {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err(self
                .failure()
                .unwrap_or_else(|| anyhow!("etcd writer stopped"))),
        }
    }

    /// Stops the writer task: what is queued is dropped, the transaction in flight (if any)
    /// is waited for, so that no write of this sink reaches etcd after this returns.
    pub async fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.task.take() {
            // Dropping the sender lets the writer finish what it already has; bound the wait by
            // aborting if it takes long (etcd unreachable): an aborted request is not retried.
            let mut t = t;
            if tokio::time::timeout(Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                t.abort();
                let _ = t.await;
            }
        }
    }

    /// Reads the stored checkpoint.
    pub async fn read_checkpoint(&mut self) -> Result<Option<Value>> {
        self.flush().await?;
        self.drain().await?;
        let resp = self
            .client
            .get(self.checkpoint_key.as_bytes(), None)
            .await
            .context("etcd: read checkpoint")?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(
                serde_json::from_slice(kv.value()).context("etcd: checkpoint value is not JSON")?,
            )),
        }
    }

    fn state_key(&self, name: &str) -> String {
        format!("{}/{}", self.state_path, name)
    }

    /// Reads a state value of the tool (e.g. `columns/<table>`), buffer first.
    pub async fn get_state(&mut self, name: &str) -> Result<Option<Value>> {
        let key = self.state_key(name);
        match self.current(&key).await? {
            None => Ok(None),
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).context("etcd: state value is not JSON")?,
            )),
        }
    }

    /// Buffers a state write; it is committed with the surrounding data.
    pub async fn put_state(&mut self, name: &str, value: &Value) -> Result<()> {
        let key = self.state_key(name);
        let v = serde_json::to_vec(value)?;
        let size = key.len() + v.len() + OP_OVERHEAD;
        self.add(key, Op::Put(v), size, None).await
    }

    /// Writes what is buffered (without the pending checkpoint) and waits until it is in etcd.
    pub async fn flush_data(&mut self) -> Result<()> {
        let cp = self.pending_checkpoint.take();
        let r = self.flush_inner().await;
        self.pending_checkpoint = cp;
        r?;
        self.drain().await
    }

    /// Pages through all key/values under `prefix` (bounded memory), calling `f` per page.
    /// Reads what is committed: call [`Sink::flush_data`] first.
    pub async fn scan_prefix(
        &mut self,
        prefix: &str,
        mut start: Vec<u8>,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)> {
        self.drain().await?;
        let end = prefix_end(prefix.as_bytes());
        if start.is_empty() {
            start = prefix.as_bytes().to_vec();
        }
        let resp = self
            .client
            .get(
                start,
                Some(GetOptions::new().with_range(end).with_limit(500)),
            )
            .await
            .context("etcd: range")?;
        let kvs: Vec<(Vec<u8>, Vec<u8>)> = resp
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        let next = if resp.more() {
            kvs.last().map(|(k, _)| {
                let mut n = k.clone();
                n.push(0);
                n
            })
        } else {
            None
        };
        Ok((kvs, next))
    }

    /// Sets (or with `None` removes) a field that every checkpoint written from now on carries.
    pub fn set_checkpoint_field(&mut self, name: &str, value: Option<Value>) {
        match value {
            Some(v) => self.extras.insert(name.to_string(), v),
            None => self.extras.remove(name),
        };
    }

    fn with_extras(&self, mut cp: Value) -> Value {
        if let Value::Object(m) = &mut cp {
            for (k, v) in &self.extras {
                m.insert(k.clone(), v.clone());
            }
        }
        cp
    }

    /// Makes the last source transaction's checkpoint pending again (when nothing else is), so
    /// that changed checkpoint fields reach etcd with the data buffered since.
    pub fn recommit(&mut self) {
        if self.pending_checkpoint.is_none() {
            if let Some(cp) = self.last_checkpoint.clone() {
                self.pending_checkpoint = Some((cp, Some(Instant::now())));
            }
        }
    }

    /// Records the changes of these tables (label, prefix) from now on; empty: none.
    pub fn watch_tables(&mut self, tables: &[(String, String)]) {
        self.touches.watch(tables);
    }

    /// The tag of the recorded changes that follow (transaction id, binlog position).
    pub fn set_change_tag(&mut self, tag: u64) {
        self.touches.set_tag(tag);
    }

    /// The changes of watched tables recorded since the last call.
    pub fn take_touches(&mut self) -> Vec<Touch> {
        self.touches.take()
    }

    /// Buffers a put of an incremental snapshot's row (not recorded as a change of the stream).
    pub async fn put_snapshot_row(
        &mut self,
        key: String,
        value: Vec<u8>,
        table: &str,
    ) -> Result<()> {
        let size = key.len() + value.len() + OP_OVERHEAD;
        if size + 256 > self.max_bytes {
            bail!(
                "row for key {key} is {size} bytes; larger than sync.max_txn_bytes ({}) allows",
                self.max_bytes
            );
        }
        let table = self.label(Some(table));
        self.add_op(key, Op::Put(value), size, table).await
    }

    /// Writes a checkpoint alone (no data), e.g. "dump in progress", and waits for it.
    pub async fn write_checkpoint(&mut self, cp: &Value) -> Result<()> {
        self.flush().await?;
        let cp = self.with_extras(cp.clone());
        self.submit(Vec::new(), Some(Vec::new()), 0, Vec::new(), Some(cp), None)
            .await?;
        self.drain().await
    }

    /// Current etcd revision (after everything submitted is committed).
    pub async fn revision(&mut self) -> Result<i64> {
        self.flush().await?;
        self.drain().await?;
        let resp = self
            .client
            .get(
                self.checkpoint_key.as_bytes(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .context("etcd: get revision")?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Buffers a put. `table` labels the metrics.
    pub async fn put(&mut self, key: String, value: Vec<u8>, table: Option<&str>) -> Result<()> {
        let size = key.len() + value.len() + OP_OVERHEAD;
        if size + 256 > self.max_bytes {
            bail!(
                "row for key {key} is {} bytes; larger than sync.max_txn_bytes ({}) allows",
                size,
                self.max_bytes
            );
        }
        self.add(key, Op::Put(value), size, table).await
    }

    pub async fn delete(&mut self, key: String, table: Option<&str>) -> Result<()> {
        let size = key.len() + OP_OVERHEAD;
        self.add(key, Op::Delete, size, table).await
    }

    fn label(&mut self, table: Option<&str>) -> Option<std::sync::Arc<str>> {
        let t = table?;
        if let Some(l) = self.labels.get(t) {
            return Some(l.clone());
        }
        let l: std::sync::Arc<str> = t.into();
        self.labels.insert(t.to_string(), l.clone());
        Some(l)
    }

    async fn add(&mut self, key: String, op: Op, size: usize, table: Option<&str>) -> Result<()> {
        let table = self.label(table);
        if let Some(t) = table.as_ref().filter(|_| !self.touches.is_empty()) {
            self.touches.key(t, &key);
        }
        self.add_op(key, op, size, table).await
    }

    async fn add_op(
        &mut self,
        key: String,
        op: Op,
        size: usize,
        table: Option<std::sync::Arc<str>>,
    ) -> Result<()> {
        if let Some((idx, _, slot)) = self.ops.get_full_mut(key.as_str()) {
            let prev = std::mem::replace(slot, (op, table));
            let old = match &prev.0 {
                Op::Put(v) => key.len() + v.len() + OP_OVERHEAD,
                Op::Delete => key.len() + OP_OVERHEAD,
            };
            if let Some(sp) = self.savepoint.as_mut().filter(|sp| idx < sp.len) {
                sp.replaced.push((idx, prev));
            }
            self.bytes = self.bytes - old + size;
            if self.bytes + 256 > self.max_bytes {
                self.flush_inner().await?;
            }
            return Ok(());
        }
        if self.ops.len() + 1 > self.data_ops_limit() || self.bytes + size + 256 > self.max_bytes {
            self.flush_inner().await?;
        }
        self.ops.insert(key, (op, table));
        self.bytes += size;
        Ok(())
    }

    /// The value a key has once the buffered operations are applied (buffer first, then etcd
    /// after the transactions in flight committed).
    pub async fn current(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        if let Some((op, _)) = self.ops.get(key) {
            return Ok(match op {
                Op::Put(v) => Some(v.clone()),
                Op::Delete => None,
            });
        }
        self.drain().await?;
        let resp = self.client.get(key, None).await.context("etcd: get")?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Deletes every key under `prefix` (must end in '/'), after what is buffered (in order).
    pub async fn delete_prefix(&mut self, prefix: &str) -> Result<()> {
        debug_assert!(prefix.ends_with('/'));
        self.touches.prefix(prefix);
        self.flush_inner().await?;
        let op = TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()));
        self.submit(vec![op], None, 0, Vec::new(), None, None).await
    }

    /// Marks the end of a source transaction: its checkpoint goes into the etcd transaction
    /// that writes its last operations.
    pub fn commit(&mut self, checkpoint: Value, commit_unix: Option<f64>) {
        self.savepoint = None;
        self.last_checkpoint = Some(checkpoint.clone());
        self.pending_checkpoint = Some((checkpoint, Some(Instant::now())));
        if commit_unix.is_some() {
            self.pending_commit_unix = commit_unix;
        }
    }

    /// Marks the start of a source transaction, so that [`Sink::abort_txn`] can take its
    /// changes out of the buffer again.
    pub fn begin_txn(&mut self) {
        let mut sp = self.savepoint.take().unwrap_or_default();
        sp.len = self.ops.len();
        sp.bytes = self.bytes;
        sp.replaced.clear();
        sp.flushed = false;
        sp.touches = self.touches.len();
        self.savepoint = Some(sp);
    }

    /// Takes the changes of the open source transaction (since [`Sink::begin_txn`]) out of the
    /// buffer; earlier transactions and the pending checkpoint stay. False when that is no
    /// longer possible: part of the transaction was already handed to the writer.
    pub fn abort_txn(&mut self) -> bool {
        let Some(mut sp) = self.savepoint.take() else {
            return true;
        };
        if sp.flushed {
            return false;
        }
        self.ops.truncate(sp.len);
        self.touches.truncate(sp.touches);
        while let Some((idx, prev)) = sp.replaced.pop() {
            if let Some((_, slot)) = self.ops.get_index_mut(idx) {
                *slot = prev;
            }
        }
        self.bytes = sp.bytes;
        true
    }

    /// Drops everything buffered and the pending checkpoint (nothing of it reaches etcd).
    pub fn discard(&mut self) {
        self.ops.clear();
        self.bytes = 0;
        self.pending_checkpoint = None;
        self.savepoint = None;
    }

    /// Operations buffered (not yet handed to the writer).
    pub fn buffered(&self) -> usize {
        self.ops.len()
    }

    pub fn has_pending_checkpoint(&self) -> bool {
        self.pending_checkpoint.is_some()
    }

    /// Hands everything buffered plus the pending checkpoint to the writer (does not wait for
    /// the commit: see [`Sink::drain`], [`Sink::take_durable`]).
    pub async fn flush(&mut self) -> Result<()> {
        self.flush_inner().await
    }

    async fn flush_inner(&mut self) -> Result<()> {
        if self.ops.is_empty() && self.pending_checkpoint.is_none() {
            return Ok(());
        }
        if let Some(sp) = self.savepoint.as_mut() {
            if self.ops.len() > sp.len || !sp.replaced.is_empty() {
                sp.flushed = true;
            } else {
                // only earlier, complete transactions go out: the open one starts afresh
                *sp = Savepoint::default();
            }
        }
        self.bytes = 0;
        let mut txn_ops = Vec::with_capacity(self.ops.len() + 1);
        let mut keys = Vec::with_capacity(self.ops.len());
        let mut per_table: Vec<(std::sync::Arc<str>, u64)> = Vec::new();
        let n = self.ops.len() as u64;
        for (key, (op, table)) in self.ops.drain(..) {
            keys.push(key_hash(key.as_bytes()));
            if let Some(t) = table {
                match per_table
                    .iter_mut()
                    .find(|(l, _)| std::sync::Arc::ptr_eq(l, &t))
                {
                    Some((_, c)) => *c += 1,
                    None => per_table.push((t, 1)),
                }
            }
            txn_ops.push(match op {
                Op::Put(v) => TxnOp::put(key, v, None),
                Op::Delete => TxnOp::delete(key, None),
            });
        }
        let cp = self
            .pending_checkpoint
            .take()
            .map(|(cp, _)| self.with_extras(cp));
        let commit_unix = if cp.is_some() {
            self.pending_commit_unix.take()
        } else {
            None
        };
        self.submit(txn_ops, Some(keys), n, per_table, cp, commit_unix)
            .await
    }

    /// The newest checkpoint known to be in etcd, once (for acknowledging to the source).
    pub fn take_durable(&mut self) -> Option<Value> {
        let s = self.state.borrow();
        match &s.durable {
            Some((seq, cp)) if *seq > self.acked => {
                let (seq, cp) = (*seq, cp.clone());
                drop(s);
                self.acked = seq;
                Some(cp)
            }
            _ => None,
        }
    }

    /// Resolves when the writer reported progress (a commit or a failure) that this sink has
    /// not looked at yet; for waiting on the source and on etcd at the same time.
    pub async fn changed(&mut self) {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// True when no key lies under `prefix` (after everything submitted is committed).
    pub async fn prefix_is_empty(&mut self, prefix: &str) -> Result<bool> {
        self.flush().await?;
        self.drain().await?;
        let resp = self
            .client
            .get(
                prefix,
                Some(
                    GetOptions::new()
                        .with_range(prefix_end(prefix.as_bytes()))
                        .with_keys_only()
                        .with_limit(1),
                ),
            )
            .await
            .context("etcd: range")?;
        Ok(resp.kvs().is_empty())
    }

    /// Deletes keys under `prefix` whose last modification is at or before `rev` (rows a
    /// re-dump did not write again: they no longer exist in the source). Pages through the
    /// keys, so memory stays bounded.
    pub async fn remove_stale(&mut self, prefix: &str, rev: i64) -> Result<u64> {
        self.flush().await?;
        self.drain().await?;
        let end = prefix_end(prefix.as_bytes());
        let mut removed = 0u64;
        loop {
            // The server filters by mod revision, so one request finds the stale keys among
            // any number of fresh ones (a paged range would be O(keys) per page on etcd 3.4).
            let resp = self
                .client
                .get(
                    prefix,
                    Some(
                        GetOptions::new()
                            .with_range(end.clone())
                            .with_keys_only()
                            .with_max_mod_revision(rev.max(1))
                            .with_limit(10_000),
                    ),
                )
                .await
                .context("etcd: range stale keys")?;
            let stale: Vec<Vec<u8>> = resp
                .kvs()
                .iter()
                .filter(|kv| kv.mod_revision() <= rev)
                .map(|kv| kv.key().to_vec())
                .collect();
            if stale.is_empty() {
                break;
            }
            for chunk in stale.chunks(self.max_ops.max(2) - 1) {
                let ops = chunk
                    .iter()
                    .map(|k| TxnOp::delete(k.clone(), None))
                    .collect();
                let keys = chunk.iter().map(|k| key_hash(k)).collect();
                self.submit(ops, Some(keys), 0, Vec::new(), None, None)
                    .await?;
                removed += chunk.len() as u64;
            }
            // the next range must see these deletes
            self.drain().await?;
        }
        Ok(removed)
    }
}
