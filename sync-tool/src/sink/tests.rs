//! The sink and its writer against the real etcd of `tests/services/up.sh` (127.0.0.1:2379);
//! `SYNC_TESTS_SKIP=1` skips them.

use std::collections::HashMap;

use etcd_client::{EventType, GetOptions, WatchOptions};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;

fn skip(name: &str) -> bool {
    if std::env::var("SYNC_TESTS_SKIP").as_deref() == Ok("1") {
        println!("{name}: skipped (SYNC_TESTS_SKIP=1)");
        return true;
    }
    false
}

fn config(path: &str, extra_sync: &str) -> Config {
    Config::parse(&format!(
        "database: {{type: postgres, user: u, name: d}}\n\
         etcd: {{endpoints: [\"127.0.0.1:2379\"], path: {path}, dial_timeout: 5s}}\n\
         sync:\n  max_txn_ops: 16\n  state_path: /{path}/state\n{extra_sync}"
    ))
    .unwrap()
}

async fn client(cfg: &Config) -> Client {
    let mut c = connect(cfg)
        .await
        .expect("etcd on 127.0.0.1:2379 (tests/services/up.sh)");
    c.delete(
        format!("/{}/", cfg.etcd.path),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    c
}

async fn stored_checkpoint(c: &mut Client, cfg: &Config) -> Value {
    let r = c
        .get(format!("{}/checkpoint", cfg.state_path()), None)
        .await
        .unwrap();
    serde_json::from_slice(r.kvs()[0].value()).unwrap()
}

fn unique(tag: &str) -> String {
    format!(
        "sinktest_{tag}_{}_{}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Many small source transactions, most on keys of their own and every third on the same
/// hot keys, with prefix deletes now and then, through four transactions in flight. etcd's
/// history must show every key's writes in source order, and every checkpoint written only
/// when all the changes of the transactions it covers were already in etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_take_effect_in_source_order() {
    if skip("pipelined_writes_take_effect_in_source_order") {
        return;
    }
    let path = unique("order");
    let cfg = config(&path, "  txns_in_flight: 4\n");
    let mut c = client(&cfg).await;
    let start = c
        .get("/", Some(GetOptions::new().with_count_only()))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
        + 1;
    let mut sink = Sink::new(c.clone(), &cfg, None);
    let (data, cp_key) = (
        format!("/{path}/d/"),
        format!("{}/checkpoint", cfg.state_path()),
    );
    const TXNS: u64 = 3000;
    for n in 1..=TXNS {
        for j in 0..5 {
            sink.put(
                format!("{data}u/{n:05}/{j}"),
                json!(n).to_string().into_bytes(),
                None,
            )
            .await
            .unwrap();
        }
        if n % 3 == 0 {
            for h in 0..4 {
                sink.put(
                    format!("{data}hot/{h}"),
                    json!(n).to_string().into_bytes(),
                    None,
                )
                .await
                .unwrap();
            }
        }
        if n % 250 == 0 {
            sink.put(format!("{data}p/{n}"), b"1".to_vec(), None)
                .await
                .unwrap();
            sink.delete_prefix(&format!("{data}p/")).await.unwrap();
            sink.put(format!("{data}p/after-{n}"), b"1".to_vec(), None)
                .await
                .unwrap();
        }
        sink.commit(json!({ "n": n }), None);
        if n % 3 == 0 {
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    sink.drain().await.unwrap();
    let durable = sink
        .take_durable()
        .expect("the last checkpoint is durable after drain");
    assert_eq!(durable["n"], TXNS, "{durable}");
    assert!(
        durable["written_ms"].as_u64().is_some(),
        "written at: {durable}"
    );
    assert!(sink.in_flight() == 0);
    sink.shutdown().await;

    // Replay etcd's history (data and checkpoint both lie under /<path>/) in revision order,
    // up to an end marker written last.
    let marker = format!("/{path}/end");
    c.put(marker.as_str(), "", None).await.unwrap();
    let mut ws = c
        .watch_client()
        .watch(
            format!("/{path}/"),
            Some(WatchOptions::new().with_prefix().with_start_revision(start)),
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    'recv: while let Some(resp) = ws.message().await.unwrap() {
        for ev in resp.events() {
            let kv = ev.kv().unwrap();
            if kv.key() == marker.as_bytes() {
                break 'recv;
            }
            events.push((
                kv.mod_revision(),
                ev.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            ));
        }
    }
    let mut state: HashMap<String, String> = HashMap::new();
    let mut last_cp = 0u64;
    let mut checkpoints = 0;
    for (rev, kind, key, value) in &events {
        if key == &cp_key {
            let n = serde_json::from_str::<Value>(value).unwrap()["n"]
                .as_u64()
                .unwrap();
            assert!(
                n >= last_cp,
                "checkpoint went back from {last_cp} to {n} at revision {rev}"
            );
            last_cp = n;
            checkpoints += 1;
            // every change of the transactions up to n is in etcd already
            for j in 0..5 {
                assert!(
                    state.contains_key(&format!("{data}u/{n:05}/{j}")),
                    "checkpoint {n} at revision {rev} before its data"
                );
            }
            let hot_min = n / 3 * 3;
            if hot_min > 0 {
                for h in 0..4 {
                    let v: u64 = state[&format!("{data}hot/{h}")].parse().unwrap();
                    assert!(
                        v >= hot_min,
                        "checkpoint {n} at revision {rev}: hot/{h} is {v}"
                    );
                }
            }
            continue;
        }
        match kind {
            EventType::Put => {
                if let Some(h) = key.strip_prefix(&format!("{data}hot/")) {
                    let old: u64 = state.get(key).map_or(0, |v| v.parse().unwrap());
                    let new: u64 = value.parse().unwrap();
                    assert!(
                        new > old,
                        "hot/{h} went from {old} to {new} at revision {rev}"
                    );
                }
                state.insert(key.clone(), value.clone());
            }
            EventType::Delete => {
                state.remove(key);
            }
        }
    }
    assert_eq!(last_cp, TXNS);
    assert!(checkpoints >= 2, "checkpoints written: {checkpoints}");
    for h in 0..4 {
        assert_eq!(state[&format!("{data}hot/{h}")], TXNS.to_string());
    }
    let p: Vec<&String> = state
        .keys()
        .filter(|k| k.starts_with(&format!("{data}p/")))
        .collect();
    assert_eq!(
        p,
        vec![&format!("{data}p/after-{TXNS}")],
        "puts after a prefix delete survive it, those before do not"
    );
    assert_eq!(
        state
            .keys()
            .filter(|k| k.starts_with(&format!("{data}u/")))
            .count() as u64,
        TXNS * 5
    );
    c.delete(
        format!("/{path}/"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
}

/// A second writer of the same instance claims the writer key: what the first one sends
/// afterwards applies nothing, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_writer_writes_nothing() {
    if skip("superseded_writer_writes_nothing") {
        return;
    }
    let path = unique("superseded");
    let cfg = config(&path, "");
    let mut c = client(&cfg).await;
    let key = format!("/{path}/k");
    let mut old = Sink::new(c.clone(), &cfg, None);
    old.put(key.clone(), b"old".to_vec(), None).await.unwrap();
    old.flush().await.unwrap();
    old.drain().await.unwrap();
    let mut new = Sink::new(c.clone(), &cfg, None);
    new.put(key.clone(), b"new".to_vec(), None).await.unwrap();
    new.flush().await.unwrap();
    new.drain().await.unwrap();
    old.put(key.clone(), b"late".to_vec(), None).await.unwrap();
    old.flush().await.unwrap();
    let e = old.drain().await.unwrap_err();
    assert!(format!("{e:#}").contains("newer writer"), "{e:#}");
    let v = c.get(key.as_str(), None).await.unwrap();
    assert_eq!(v.kvs()[0].value(), b"new");
    c.delete(
        format!("/{path}/"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
}

/// The HA fence: once the leader key is gone, transactions apply nothing and the sink reports
/// lost leadership (not a retryable error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fence_is_lost_leadership() {
    if skip("lost_fence_is_lost_leadership") {
        return;
    }
    let path = unique("fence");
    let cfg = config(&path, "");
    let mut c = client(&cfg).await;
    let leader = format!("{}/leader", cfg.state_path());
    let rev = c
        .put(leader.as_str(), "me", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut sink = Sink::new(
        c.clone(),
        &cfg,
        Some(Fence {
            key: leader.clone().into_bytes(),
            rev,
        }),
    );
    sink.put(format!("/{path}/d/a"), b"1".to_vec(), None)
        .await
        .unwrap();
    sink.commit(json!({ "n": 1 }), None);
    sink.flush().await.unwrap();
    sink.drain().await.unwrap();
    c.delete(leader.as_str(), None).await.unwrap();
    sink.put(format!("/{path}/d/b"), b"1".to_vec(), None)
        .await
        .unwrap();
    sink.commit(json!({ "n": 2 }), None);
    sink.flush().await.unwrap();
    let e = sink.drain().await.unwrap_err();
    assert!(e.is::<LostLeadership>(), "{e:#}");
    let got = c
        .get(
            format!("/{path}/d/"),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(stored_checkpoint(&mut c, &cfg).await["n"], 1);
    c.delete(
        format!("/{path}/"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
}

/// A source transaction that never ends (its binlog file was cut by a crash) is taken back out
/// of the buffer: the transactions before it, and their checkpoint, still reach etcd; its puts,
/// deletes and overwrites of keys buffered before it do not. Once part of it went out, it can
/// no longer be taken back and the sink says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_transaction_is_taken_back() {
    if skip("unfinished_transaction_is_taken_back") {
        return;
    }
    let path = unique("abort");
    let cfg = config(&path, "");
    let mut c = client(&cfg).await;
    let d = format!("/{path}/d/");
    let mut sink = Sink::new(c.clone(), &cfg, None);
    // committed, still buffered
    sink.begin_txn();
    sink.put(format!("{d}a"), b"a1".to_vec(), None)
        .await
        .unwrap();
    sink.put(format!("{d}b"), b"b1".to_vec(), None)
        .await
        .unwrap();
    sink.commit(json!({ "n": 1 }), None);
    // unfinished: overwrites a, deletes b, adds c and d (d twice)
    sink.begin_txn();
    sink.put(format!("{d}a"), b"a2".to_vec(), None)
        .await
        .unwrap();
    sink.delete(format!("{d}b"), None).await.unwrap();
    sink.put(format!("{d}c"), b"c2".to_vec(), None)
        .await
        .unwrap();
    sink.put(format!("{d}d"), b"d2".to_vec(), None)
        .await
        .unwrap();
    sink.put(format!("{d}d"), b"d3".to_vec(), None)
        .await
        .unwrap();
    assert!(sink.abort_txn());
    assert_eq!(sink.buffered(), 2);
    sink.flush().await.unwrap();
    sink.drain().await.unwrap();
    let got = c
        .get(d.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let kv: Vec<(String, String)> = got
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap()[d.len()..].to_string(),
                kv.value_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kv,
        vec![("a".into(), "a1".into()), ("b".into(), "b1".into())]
    );
    assert_eq!(stored_checkpoint(&mut c, &cfg).await["n"], 1);

    // more changes than one etcd transaction holds: the first part is out, no taking back
    sink.begin_txn();
    for i in 0..40 {
        sink.put(format!("{d}big/{i}"), b"x".to_vec(), None)
            .await
            .unwrap();
    }
    assert!(!sink.abort_txn());
    // a transaction that begins when earlier ones fill the buffer starts afresh after the flush
    sink.discard();
    for i in 0..15 {
        sink.put(format!("{d}e/{i}"), b"e".to_vec(), None)
            .await
            .unwrap();
    }
    sink.commit(json!({ "n": 2 }), None);
    sink.begin_txn();
    sink.put(format!("{d}f"), b"f".to_vec(), None)
        .await
        .unwrap(); // the 15 before go out first
    sink.put(format!("{d}g"), b"g".to_vec(), None)
        .await
        .unwrap();
    assert!(sink.abort_txn());
    assert_eq!(sink.buffered(), 0);
    c.delete(
        format!("/{path}/"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
}
