//! etcd sink: batches of puts/deletes written as etcd transactions of at most
//! `sync.max_txn_ops` operations and `sync.max_txn_bytes` bytes. The checkpoint of the last
//! complete source transaction in a batch is written in the same etcd transaction as its
//! data; every transaction carries a compare on the HA leader key (fencing: a deposed leader's
//! writes fail). Writes are idempotent (whole-row puts, deletes), so a source transaction that
//! had to be split into several etcd transactions converges when it is replayed after a crash.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    TlsOptions, Txn, TxnOp,
};
use serde_json::Value;

use crate::config::Config;
use crate::metrics::METRICS;

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
        write!(f, "leadership lost: another sync-tool instance is active (etcd fence compare failed)")
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

pub struct Sink {
    client: Client,
    fence: Option<Fence>,
    checkpoint_key: String,
    state_path: String,
    max_ops: usize,
    max_bytes: usize,
    // batch
    ops: Vec<(String, Op, Option<String>)>,
    index: HashMap<String, usize>,
    bytes: usize,
    pending_checkpoint: Option<(Value, Option<Instant>)>,
    /// Last checkpoint written (set after a successful etcd commit), for the source to ack.
    durable: Option<Value>,
    /// Commit time (unix seconds) of the last applied source transaction, for lag metrics.
    pending_commit_unix: Option<f64>,
}

impl Sink {
    pub fn new(client: Client, cfg: &Config, fence: Option<Fence>) -> Sink {
        Sink {
            client,
            fence,
            checkpoint_key: format!("{}/checkpoint", cfg.state_path()),
            state_path: cfg.state_path(),
            max_ops: cfg.sync.max_txn_ops,
            max_bytes: cfg.sync.max_txn_bytes,
            ops: Vec::new(),
            index: HashMap::new(),
            bytes: 0,
            pending_checkpoint: None,
            durable: None,
            pending_commit_unix: None,
        }
    }

    fn data_ops_limit(&self) -> usize {
        // one op for the checkpoint
        self.max_ops - 1
    }

    fn fence_cmp(&self) -> Vec<Compare> {
        match &self.fence {
            Some(f) => vec![Compare::create_revision(f.key.clone(), CompareOp::Equal, f.rev)],
            None => vec![],
        }
    }

    async fn run_txn(&mut self, ops: Vec<TxnOp>) -> Result<i64> {
        let txn = Txn::new().when(self.fence_cmp()).and_then(ops);
        let resp = self.client.txn(txn).await.context("etcd: transaction")?;
        if !resp.succeeded() {
            return Err(LostLeadership.into());
        }
        METRICS.etcd_txns.inc();
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Reads the stored checkpoint.
    pub async fn read_checkpoint(&mut self) -> Result<Option<Value>> {
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
            Some(v) => Ok(Some(serde_json::from_slice(&v).context("etcd: state value is not JSON")?)),
        }
    }

    /// Buffers a state write; it is committed with the surrounding data.
    pub async fn put_state(&mut self, name: &str, value: &Value) -> Result<()> {
        let key = self.state_key(name);
        let v = serde_json::to_vec(value)?;
        let size = key.len() + v.len() + OP_OVERHEAD;
        self.add(key, Op::Put(v), size, None).await
    }

    /// Writes what is buffered (without the pending checkpoint).
    pub async fn flush_data(&mut self) -> Result<()> {
        let cp = self.pending_checkpoint.take();
        let r = self.flush_inner(false).await;
        self.pending_checkpoint = cp;
        r
    }

    /// Pages through all key/values under `prefix` (bounded memory), calling `f` per page.
    pub async fn scan_prefix(&mut self, prefix: &str, mut start: Vec<u8>) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)> {
        let end = prefix_end(prefix.as_bytes());
        if start.is_empty() {
            start = prefix.as_bytes().to_vec();
        }
        let resp = self
            .client
            .get(start, Some(GetOptions::new().with_range(end).with_limit(500)))
            .await
            .context("etcd: range")?;
        let kvs: Vec<(Vec<u8>, Vec<u8>)> = resp.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect();
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

    /// Writes a checkpoint alone (no data), e.g. "dump in progress".
    pub async fn write_checkpoint(&mut self, cp: &Value) -> Result<()> {
        self.flush().await?;
        let op = TxnOp::put(self.checkpoint_key.as_bytes(), serde_json::to_vec(cp)?, None);
        self.run_txn(vec![op]).await?;
        self.durable = Some(cp.clone());
        METRICS.set_checkpoint(cp);
        Ok(())
    }

    /// Current etcd revision.
    pub async fn revision(&mut self) -> Result<i64> {
        let resp = self
            .client
            .get(self.checkpoint_key.as_bytes(), Some(GetOptions::new().with_count_only()))
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

    async fn add(&mut self, key: String, op: Op, size: usize, table: Option<&str>) -> Result<()> {
        let table = table.map(str::to_string);
        if let Some(&i) = self.index.get(&key) {
            let old = match &self.ops[i].1 {
                Op::Put(v) => key.len() + v.len() + OP_OVERHEAD,
                Op::Delete => key.len() + OP_OVERHEAD,
            };
            self.bytes = self.bytes - old + size;
            self.ops[i].1 = op;
            self.ops[i].2 = table;
            if self.bytes + 256 > self.max_bytes {
                self.flush_inner(false).await?;
            }
            return Ok(());
        }
        if self.ops.len() + 1 > self.data_ops_limit() || self.bytes + size + 256 > self.max_bytes {
            self.flush_inner(false).await?;
        }
        self.index.insert(key.clone(), self.ops.len());
        self.ops.push((key, op, table));
        self.bytes += size;
        Ok(())
    }

    /// The value a key has once the buffered operations are applied (buffer first, then etcd).
    pub async fn current(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        if let Some(&i) = self.index.get(key) {
            return Ok(match &self.ops[i].1 {
                Op::Put(v) => Some(v.clone()),
                Op::Delete => None,
            });
        }
        let resp = self.client.get(key, None).await.context("etcd: get")?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Deletes every key under `prefix` (must end in '/'), after writing what is buffered.
    pub async fn delete_prefix(&mut self, prefix: &str) -> Result<()> {
        debug_assert!(prefix.ends_with('/'));
        self.flush_inner(false).await?;
        let op = TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()));
        self.run_txn(vec![op]).await?;
        Ok(())
    }

    /// Marks the end of a source transaction: its checkpoint goes into the etcd transaction
    /// that writes its last operations.
    pub fn commit(&mut self, checkpoint: Value, commit_unix: Option<f64>) {
        self.pending_checkpoint = Some((checkpoint, Some(Instant::now())));
        if commit_unix.is_some() {
            self.pending_commit_unix = commit_unix;
        }
    }

    /// Operations buffered (not yet in etcd).
    pub fn buffered(&self) -> usize {
        self.ops.len()
    }

    pub fn has_pending_checkpoint(&self) -> bool {
        self.pending_checkpoint.is_some()
    }

    /// Writes everything buffered plus the pending checkpoint.
    pub async fn flush(&mut self) -> Result<()> {
        self.flush_inner(true).await
    }

    async fn flush_inner(&mut self, _explicit: bool) -> Result<()> {
        if self.ops.is_empty() && self.pending_checkpoint.is_none() {
            return Ok(());
        }
        let ops = std::mem::take(&mut self.ops);
        self.index.clear();
        self.bytes = 0;
        let mut txn_ops = Vec::with_capacity(ops.len() + 1);
        let mut per_table: HashMap<String, u64> = HashMap::new();
        let n = ops.len() as u64;
        for (key, op, table) in ops {
            if let Some(t) = table {
                *per_table.entry(t).or_default() += 1;
            }
            txn_ops.push(match op {
                Op::Put(v) => TxnOp::put(key, v, None),
                Op::Delete => TxnOp::delete(key, None),
            });
        }
        let cp = self.pending_checkpoint.take();
        if let Some((cp, _)) = &cp {
            txn_ops.push(TxnOp::put(self.checkpoint_key.as_bytes(), serde_json::to_vec(cp)?, None));
        }
        self.run_txn(txn_ops).await?;
        METRICS.rows_applied.add(n);
        for (t, c) in per_table {
            METRICS.add_table_rows(&t, c);
        }
        if let Some((cp, _)) = cp {
            METRICS.set_checkpoint(&cp);
            if let Some(t) = self.pending_commit_unix.take() {
                METRICS.observe_commit(t);
            }
            self.durable = Some(cp);
        }
        Ok(())
    }

    /// The newest checkpoint known to be in etcd, once (for acknowledging to the source).
    pub fn take_durable(&mut self) -> Option<Value> {
        self.durable.take()
    }

    /// Deletes keys under `prefix` whose last modification is at or before `rev` (rows a
    /// re-dump did not write again: they no longer exist in the source). Pages through the
    /// keys, so memory stays bounded.
    pub async fn remove_stale(&mut self, prefix: &str, rev: i64) -> Result<u64> {
        self.flush().await?;
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
            let stale: Vec<Vec<u8>> =
                resp.kvs().iter().filter(|kv| kv.mod_revision() <= rev).map(|kv| kv.key().to_vec()).collect();
            if stale.is_empty() {
                break;
            }
            for chunk in stale.chunks(self.max_ops.max(2) - 1) {
                let ops = chunk.iter().map(|k| TxnOp::delete(k.clone(), None)).collect();
                self.run_txn(ops).await?;
                removed += chunk.len() as u64;
            }
        }
        Ok(removed)
    }
}
