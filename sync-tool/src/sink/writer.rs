//! The writer task: sends the sink's batches to etcd with several transactions in flight,
//! and still never lets etcd's state or the stored checkpoint get ahead of the source's order.
//!
//! etcd serves concurrent requests in whatever order its goroutines reach raft (measured: with
//! four in flight, about every other transaction overtakes its predecessor), so order is not
//! asked of it. Instead:
//! - Transactions in flight at the same time never touch the same key: a batch that names a
//!   key of one in flight waits for it. A batch whose keys are not known (a prefix delete) is
//!   a barrier: sent alone.
//! - The checkpoint is put only into a transaction sent while nothing else is in flight, so
//!   every change before it is in etcd when it is. That happens by itself whenever the source
//!   pauses; under sustained load the writer makes it happen every `CHECKPOINT_EVERY`; a
//!   checkpoint not yet written when the writer runs out of work goes out on its own.
//! - Each writer writes a fresh nonce to `<state_path>/writer` before anything else, and every
//!   transaction requires it, so a transaction of an earlier writer of this instance that
//!   reaches etcd late (its client gave up waiting) applies nothing. Transactions also require
//!   the HA leader key (fence) of this instance.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
use futures_util::stream::{FuturesOrdered, StreamExt};
use rustc_hash::FxHashMap;
use serde_json::Value;

use super::{Fence, LostLeadership};
use crate::metrics::{now_unix, METRICS};

/// Longest time a pending checkpoint waits for the pipeline to empty by itself before the
/// writer empties it (bounds how much is replayed after a crash and how far the source's
/// acknowledged position lags etcd).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// One etcd transaction's worth of work from the sink.
pub(super) struct Batch {
    pub seq: u64,
    pub ops: Vec<TxnOp>,
    /// Hashes of the keys `ops` name; `None` when they are not known (prefix delete).
    pub keys: Option<Vec<u64>>,
    pub rows: u64,
    pub per_table: Vec<(Arc<str>, u64)>,
    /// The checkpoint of the last source transaction this batch completes.
    pub checkpoint: Option<Value>,
    pub commit_unix: Option<f64>,
}

/// What the writer task reports back.
#[derive(Clone, Default)]
pub(super) struct WriterState {
    /// Sequence number of the last batch etcd committed, with every one before it.
    pub committed: u64,
    /// Newest checkpoint etcd committed, numbered (1, 2, …) in the order they were written.
    pub durable: Option<(u64, Value)>,
    /// A checkpoint handed over is not in etcd yet (as of `committed`).
    pub checkpoint_unwritten: bool,
    /// First failure; the writer stops there and drops everything queued after it.
    pub failed: Option<Failure>,
}

#[derive(Clone)]
pub(super) enum Failure {
    Lost,
    Other(String),
}

impl Failure {
    pub fn to_error(&self) -> anyhow::Error {
        match self {
            Failure::Lost => LostLeadership.into(),
            Failure::Other(m) => anyhow!("{m}"),
        }
    }
}

pub(super) struct Writer {
    pub client: Client,
    pub fence: Option<Fence>,
    pub checkpoint_key: Vec<u8>,
    /// `<state_path>/writer`.
    pub nonce_key: Vec<u8>,
    pub depth: usize,
}

/// A request sent and not answered yet.
struct Sent {
    batch: Batch,
    /// The checkpoint this transaction writes.
    checkpoint: Option<Value>,
}

/// The checkpoint handed over by the sink and not yet written to etcd.
struct Unwritten {
    value: Value,
    commit_unix: Option<f64>,
    since: Instant,
}

/// One request; every call returns the same future type, so they fit in one queue.
async fn send(mut client: Client, txn: Txn) -> Result<TxnResponse, etcd_client::Error> {
    client.txn(txn).await
}

impl Writer {
    fn when(&self, nonce: &[u8]) -> Vec<Compare> {
        let mut c = Vec::with_capacity(2);
        if let Some(f) = &self.fence {
            c.push(Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.rev,
            ));
        }
        c.push(Compare::value(
            self.nonce_key.clone(),
            CompareOp::Equal,
            nonce,
        ));
        c
    }

    /// Why a transaction applied nothing: the fence key changed (leadership lost) or the
    /// nonce did (a newer writer of this instance took over).
    fn failure(&self, resp: &TxnResponse) -> Failure {
        let Some(f) = &self.fence else {
            return superseded();
        };
        let holds_fence = resp.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == f.rev),
            _ => false,
        });
        if holds_fence {
            superseded()
        } else {
            Failure::Lost
        }
    }

    fn otherwise(&self) -> Vec<TxnOp> {
        match &self.fence {
            Some(f) => vec![TxnOp::get(f.key.clone(), None)],
            None => vec![],
        }
    }

    /// Claims the nonce key for this writer (under the fence).
    async fn claim(&mut self, nonce: &[u8]) -> Result<(), Failure> {
        let when = match &self.fence {
            Some(f) => vec![Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.rev,
            )],
            None => vec![],
        };
        let txn =
            Txn::new()
                .when(when)
                .and_then(vec![TxnOp::put(self.nonce_key.clone(), nonce, None)]);
        match self.client.txn(txn).await {
            Ok(r) if r.succeeded() => Ok(()),
            Ok(_) => Err(Failure::Lost),
            Err(e) => Err(Failure::Other(format!(
                "{:#}",
                anyhow::Error::from(e).context("etcd: claim writer key")
            ))),
        }
    }

    /// Runs until the sink's sender is dropped and everything sent is answered, or until the
    /// first failure (then nothing more is sent).
    pub async fn run(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<Batch>,
        state: tokio::sync::watch::Sender<WriterState>,
    ) {
        let fail = |f: Failure| state.send_modify(|s| s.failed = Some(f));
        let nonce = format!("{:016x}", rand::random::<u64>()).into_bytes();
        if let Err(f) = self.claim(&nonce).await {
            return fail(f);
        }
        let when = self.when(&nonce);
        let otherwise = self.otherwise();
        let txn = |ops: Vec<TxnOp>| {
            Txn::new()
                .when(when.clone())
                .and_then(ops)
                .or_else(otherwise.clone())
        };

        let mut in_flight: VecDeque<Sent> = VecDeque::new();
        let mut answers = FuturesOrdered::new();
        // key hash → sequence number of the last batch in flight that names it
        let mut busy: FxHashMap<u64, u64> = FxHashMap::default();
        let mut barrier_in_flight = false;
        // the batch to send next, held back while it must wait
        let mut next: Option<Batch> = None;
        let mut unwritten: Option<Unwritten> = None;
        let mut open = true;
        loop {
            if next.is_none() && open {
                match rx.try_recv() {
                    Ok(b) => next = Some(take(b, &mut unwritten)),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            // Nothing left to send but a checkpoint: write it on its own.
            if next.is_none() && in_flight.is_empty() && unwritten.is_some() {
                let nothing = Batch {
                    seq: 0,
                    ops: Vec::new(),
                    keys: Some(Vec::new()),
                    rows: 0,
                    per_table: Vec::new(),
                    checkpoint: None,
                    commit_unix: None,
                };
                next = Some(nothing);
            }
            if let Some(b) = &next {
                let alone = in_flight.is_empty();
                let clash = barrier_in_flight
                    || match &b.keys {
                        None => !alone,
                        Some(keys) => keys.iter().any(|k| busy.contains_key(k)),
                    };
                let checkpoint_due = unwritten
                    .as_ref()
                    .is_some_and(|u| b.ops.is_empty() || u.since.elapsed() >= CHECKPOINT_EVERY);
                if in_flight.len() < self.depth && !clash && (alone || !checkpoint_due) {
                    let mut b = next.take().expect("checked above");
                    let mut ops = std::mem::take(&mut b.ops);
                    let mut checkpoint = None;
                    if alone {
                        if let Some(mut u) = unwritten.take() {
                            // when it was written, for `status`
                            if let Value::Object(m) = &mut u.value {
                                m.insert(
                                    "written_ms".into(),
                                    Value::from((now_unix() * 1000.0) as u64),
                                );
                            }
                            match serde_json::to_vec(&u.value) {
                                Ok(v) => ops.push(TxnOp::put(self.checkpoint_key.clone(), v, None)),
                                Err(e) => return fail(Failure::Other(format!("checkpoint: {e}"))),
                            }
                            b.commit_unix = u.commit_unix;
                            checkpoint = Some(u.value);
                        }
                    }
                    match &b.keys {
                        Some(keys) => {
                            for k in keys {
                                busy.insert(*k, b.seq);
                            }
                        }
                        None => barrier_in_flight = true,
                    }
                    answers.push_back(send(self.client.clone(), txn(ops)));
                    in_flight.push_back(Sent {
                        batch: b,
                        checkpoint,
                    });
                    continue;
                }
            }
            if !open && next.is_none() && in_flight.is_empty() {
                return;
            }
            tokio::select! {
                biased;
                Some(r) = answers.next() => {
                    let Sent { batch: b, checkpoint } = in_flight.pop_front().expect("one entry per request");
                    match r {
                        Ok(resp) if resp.succeeded() => {}
                        Ok(resp) => return fail(self.failure(&resp)),
                        Err(e) => return fail(Failure::Other(format!("{:#}", anyhow::Error::from(e).context("etcd: transaction")))),
                    }
                    match &b.keys {
                        Some(keys) => {
                            for k in keys {
                                if busy.get(k) == Some(&b.seq) {
                                    busy.remove(k);
                                }
                            }
                        }
                        None => barrier_in_flight = false,
                    }
                    let pending = unwritten.is_some() || in_flight.iter().any(|s| s.checkpoint.is_some());
                    committed(&state, b, checkpoint, pending);
                }
                b = rx.recv(), if open && next.is_none() => match b {
                    Some(b) => next = Some(take(b, &mut unwritten)),
                    None => open = false,
                },
            }
        }
    }
}

/// A batch from the sink becomes the next to send; its checkpoint becomes the one to write
/// (with it or with a later transaction, never before its data).
fn take(b: Batch, unwritten: &mut Option<Unwritten>) -> Batch {
    if let Some(cp) = &b.checkpoint {
        let since = unwritten.as_ref().map_or_else(Instant::now, |u| u.since);
        *unwritten = Some(Unwritten {
            value: cp.clone(),
            commit_unix: b.commit_unix,
            since,
        });
    }
    b
}

fn superseded() -> Failure {
    Failure::Other("etcd: a newer writer of this instance took over (writer key changed)".into())
}

/// `pending`: a checkpoint handed over is still not in etcd.
fn committed(
    state: &tokio::sync::watch::Sender<WriterState>,
    b: Batch,
    checkpoint: Option<Value>,
    pending: bool,
) {
    METRICS.etcd_txns.inc();
    METRICS.rows_applied.add(b.rows);
    for (t, c) in &b.per_table {
        METRICS.add_table_rows(t, *c);
    }
    if let Some(cp) = &checkpoint {
        METRICS.set_checkpoint(cp);
        if let Some(t) = b.commit_unix {
            METRICS.observe_commit(t);
        }
    }
    state.send_modify(|s| {
        // the checkpoint-only batch the writer makes itself has no sequence number
        s.committed = s.committed.max(b.seq);
        s.checkpoint_unwritten = pending;
        if let Some(cp) = checkpoint {
            let n = s.durable.as_ref().map_or(0, |d| d.0) + 1;
            s.durable = Some((n, cp));
        }
    });
}

/// Hash of a key, for telling whether two batches touch the same key (a collision only makes
/// a batch wait needlessly).
pub(super) fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}
