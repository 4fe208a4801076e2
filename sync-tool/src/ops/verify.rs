//! `sync-tool verify`: compares the selected source tables with etcd while the sync runs.
//! Each table is read in primary-key order in chunks (short statements, no snapshot held);
//! every row is mapped to its key and value as the dump writes them and compared with what
//! etcd holds (a chunk's keys are read in transactions of gets, so one chunk is one etcd
//! revision); then etcd's keys under the table's prefix are counted and those no source row
//! produced are extra. The source moves on while this runs, so a difference is reported only if
//! it is still there in the passes that follow, until the tool's checkpoint stands still (the
//! tool is idle or down: nothing will change) or `--settle` has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::{Client, GetOptions, Txn, TxnOp, TxnOpResponse};
use rustc_hash::FxHashSet;
use serde_json::Value;

use crate::config::Config;
use crate::sink::{self, prefix_end};
use crate::source::scan::Scanner;
use crate::source::TableMeta;

pub struct Options {
    /// Longest time spent re-checking differences while the tool keeps applying changes.
    pub settle: Duration,
    /// Source rows per chunk.
    pub chunk: usize,
    /// Keys listed per kind of difference and table.
    pub show: usize,
}

/// Keys kept per kind of difference (counts stay exact beyond it).
const KEEP: usize = 100_000;

#[derive(Default, PartialEq, Debug)]
struct TableDiff {
    source_rows: u64,
    etcd_keys: u64,
    missing: BTreeSet<String>,
    extra: BTreeSet<String>,
    /// Key → the columns whose values differ.
    stale: BTreeMap<String, Vec<String>>,
    /// Differences beyond [`KEEP`] (counted, not kept).
    more: u64,
}

impl TableDiff {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty() && self.more == 0
    }

    fn count(&self) -> u64 {
        (self.missing.len() + self.extra.len() + self.stale.len()) as u64 + self.more
    }

    fn keep(&mut self) -> bool {
        if (self.missing.len() + self.extra.len() + self.stale.len()) < KEEP {
            return true;
        }
        self.more += 1;
        false
    }

    /// Keeps what `later` still shows; its counts replace these.
    fn persisting(self, later: TableDiff) -> TableDiff {
        TableDiff {
            source_rows: later.source_rows,
            etcd_keys: later.etcd_keys,
            missing: self.missing.intersection(&later.missing).cloned().collect(),
            extra: self.extra.intersection(&later.extra).cloned().collect(),
            stale: later
                .stale
                .into_iter()
                .filter(|(k, _)| self.stale.contains_key(k))
                .collect(),
            more: self.more.min(later.more),
        }
    }
}

/// The columns whose values differ between two JSON rows (all of them when one is no object).
fn differing_columns(want: &[u8], got: &[u8]) -> Vec<String> {
    match (
        serde_json::from_slice::<Value>(want),
        serde_json::from_slice::<Value>(got),
    ) {
        (Ok(Value::Object(w)), Ok(Value::Object(g))) => {
            let mut cols: Vec<String> = w
                .iter()
                .filter(|(k, v)| g.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect();
            cols.extend(g.keys().filter(|k| !w.contains_key(*k)).cloned());
            cols
        }
        (Ok(w), Ok(g)) if w == g => Vec::new(),
        _ => vec!["<whole value>".into()],
    }
}

/// The values of `keys` in etcd, each group of `per_txn` read in one transaction (one revision).
async fn get_many(
    client: &Client,
    keys: &[String],
    per_txn: usize,
) -> Result<Vec<Option<Vec<u8>>>> {
    let groups = keys.chunks(per_txn.max(1)).map(|g| {
        let mut kv = client.kv_client();
        let ops: Vec<TxnOp> = g.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        async move {
            kv.txn(Txn::new().and_then(ops))
                .await
                .context("etcd: read keys")
        }
    });
    let mut out = Vec::with_capacity(keys.len());
    for resp in futures_util::future::try_join_all(groups).await? {
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                out.push(g.kvs().first().map(|kv| kv.value().to_vec()));
            }
        }
    }
    Ok(out)
}

async fn compare(
    client: &mut Client,
    scanner: &mut Scanner,
    i: usize,
    t: &TableMeta,
    opts: &Options,
    per_txn: usize,
) -> Result<TableDiff> {
    let mut d = TableDiff::default();
    let mut seen: FxHashSet<u64> = FxHashSet::default();
    let hash = |k: &[u8]| {
        use std::hash::BuildHasher;
        rustc_hash::FxBuildHasher.hash_one(k)
    };
    let mut cursor = None;
    loop {
        let rows = scanner.chunk(i, &mut cursor, opts.chunk).await?;
        let keys: Vec<String> = rows.iter().map(|(k, _)| k.clone()).collect();
        let got = get_many(client, &keys, per_txn).await?;
        d.source_rows += rows.len() as u64;
        for ((key, want), got) in rows.iter().zip(got) {
            seen.insert(hash(key.as_bytes()));
            match got {
                None => {
                    if d.keep() {
                        d.missing.insert(key.clone());
                    }
                }
                Some(v) if v != *want => {
                    let cols = differing_columns(want, &v);
                    if !cols.is_empty() && d.keep() {
                        d.stale.insert(key.clone(), cols);
                    }
                }
                Some(_) => {}
            }
        }
        if rows.len() < opts.chunk {
            break;
        }
    }
    // keys no source row produced
    let end = prefix_end(t.prefix.as_bytes());
    let mut from = t.prefix.as_bytes().to_vec();
    loop {
        let resp = client
            .get(
                from.clone(),
                Some(
                    GetOptions::new()
                        .with_range(end.clone())
                        .with_keys_only()
                        .with_limit(1000),
                ),
            )
            .await
            .context("etcd: range keys")?;
        for kv in resp.kvs() {
            d.etcd_keys += 1;
            if !seen.contains(&hash(kv.key())) && d.keep() {
                d.extra
                    .insert(String::from_utf8_lossy(kv.key()).into_owned());
            }
        }
        match resp.kvs().last() {
            Some(kv) if resp.more() => {
                from = kv.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok(d)
}

/// The stored checkpoint's revision: it stands still while the tool applies nothing.
async fn checkpoint_rev(client: &mut Client, cfg: &Config) -> Result<i64> {
    let r = client
        .get(format!("{}/checkpoint", cfg.state_path()), None)
        .await
        .context("etcd: read checkpoint")?;
    Ok(r.kvs().first().map_or(0, |kv| kv.mod_revision()))
}

fn print(t: &TableMeta, d: &TableDiff, show: usize) {
    let head = format!(
        "{}: {} rows in the source, {} keys in etcd",
        t.label(),
        d.source_rows,
        d.etcd_keys
    );
    if d.is_empty() {
        println!("{head}: equal");
        return;
    }
    println!(
        "{head}: {} missing, {} extra, {} stale{}",
        d.missing.len(),
        d.extra.len(),
        d.stale.len(),
        if d.more > 0 {
            format!(", {} more", d.more)
        } else {
            String::new()
        }
    );
    let lines = d
        .missing
        .iter()
        .map(|k| format!("  missing {k}"))
        .chain(d.extra.iter().map(|k| format!("  extra   {k}")))
        .chain(
            d.stale
                .iter()
                .map(|(k, c)| format!("  stale   {k} (columns: {})", c.join(", "))),
        );
    for (listed, l) in lines.enumerate() {
        if listed == show {
            println!("  … and {} more", d.count() - show as u64);
            break;
        }
        println!("{l}");
    }
}

/// Compares, prints the result; true when etcd equals the source.
pub async fn run(cfg: &Config, opts: &Options) -> Result<bool> {
    let mut client = sink::connect(cfg).await?;
    let mut scanner = Scanner::open(cfg).await?;
    let tables = scanner.tables();
    let per_txn = cfg.sync.max_txn_ops;
    let t0 = Instant::now();
    let mut rev = checkpoint_rev(&mut client, cfg).await?;
    let mut diffs = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        diffs.push(compare(&mut client, &mut scanner, i, t, opts, per_txn).await?);
    }
    let mut passes = 1;
    while diffs.iter().any(|d| !d.is_empty()) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now_rev = checkpoint_rev(&mut client, cfg).await?;
        let idle = now_rev == rev;
        rev = now_rev;
        let mut changed = false;
        for (i, t) in tables.iter().enumerate() {
            if diffs[i].is_empty() {
                continue;
            }
            let later = compare(&mut client, &mut scanner, i, t, opts, per_txn).await?;
            let before = std::mem::take(&mut diffs[i]);
            let (b_missing, b_extra, b_stale) =
                (before.missing.len(), before.extra.len(), before.stale.len());
            diffs[i] = before.persisting(later);
            changed |= (
                diffs[i].missing.len(),
                diffs[i].extra.len(),
                diffs[i].stale.len(),
            ) != (b_missing, b_extra, b_stale);
        }
        passes += 1;
        // the same differences while the tool applied nothing: they stay
        if (idle && !changed) || t0.elapsed() >= opts.settle {
            break;
        }
    }
    for (t, d) in tables.iter().zip(&diffs) {
        print(t, d, opts.show);
    }
    let differing = diffs.iter().filter(|d| !d.is_empty()).count();
    let how = format!(
        "{passes} pass{}, {:.1} s",
        if passes == 1 { "" } else { "es" },
        t0.elapsed().as_secs_f64()
    );
    if differing == 0 {
        println!(
            "verify: etcd equals the source ({} tables; {how})",
            tables.len()
        );
    } else {
        println!(
            "verify: etcd differs from the source in {differing} of {} tables ({how})",
            tables.len()
        );
    }
    Ok(differing == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_that_differ() {
        assert_eq!(
            differing_columns(br#"{"id":1,"v":"a","n":2}"#, br#"{"id":1,"v":"b","n":2}"#),
            vec!["v"]
        );
        assert_eq!(
            differing_columns(br#"{"id":1,"v":"a"}"#, br#"{"id":1,"w":"a"}"#),
            vec!["v", "w"]
        );
        assert!(
            differing_columns(br#"{"id":1.0}"#, br#"{"id":1.0 }"#).is_empty(),
            "same JSON, other bytes"
        );
        assert_eq!(differing_columns(b"{}", b"garbage"), vec!["<whole value>"]);
    }

    #[test]
    fn only_persisting_differences_stay() {
        let mut a = TableDiff::default();
        a.missing.insert("k1".into());
        a.missing.insert("k2".into());
        a.stale.insert("k3".into(), vec!["v".into()]);
        let mut b = TableDiff {
            source_rows: 10,
            etcd_keys: 9,
            ..Default::default()
        };
        b.missing.insert("k2".into());
        b.extra.insert("k4".into());
        let p = a.persisting(b);
        assert_eq!(p.missing.into_iter().collect::<Vec<_>>(), vec!["k2"]);
        assert!(p.extra.is_empty() && p.stale.is_empty());
        assert_eq!((p.source_rows, p.etcd_keys), (10, 9));
    }
}
