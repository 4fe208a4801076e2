//! Helpers for the integration tests: real PostgreSQL / MariaDB / etcd on loopback
//! (tests/services/up.sh), the real sync-tool binary.
#![allow(dead_code)]

pub mod maria;
pub mod pg_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PG_PORT: u16 = 5433;

/// The PostgreSQL server of the suites: 5433, or a private one of major SYNC_PG_MAJOR.
pub fn pg_port() -> u16 {
    pg_server::suite_port()
}
pub const ETCD: &str = "127.0.0.1:2379";
pub const BIN: &str = env!("CARGO_BIN_EXE_sync-tool");

/// True (and prints "skipped") when SYNC_TESTS_SKIP=1.
pub fn skip(name: &str) -> bool {
    if std::env::var("SYNC_TESTS_SKIP").as_deref() == Ok("1") {
        println!("{name}: skipped (SYNC_TESTS_SKIP=1)");
        return true;
    }
    false
}

pub fn unique(tag: &str) -> String {
    format!(
        "st_{tag}_{}_{}",
        std::process::id(),
        rand::random::<u32>() % 100_000
    )
}

pub fn services_dir() -> PathBuf {
    PathBuf::from(std::env::var("SERVICES_DIR").unwrap_or_else(|_| "/tmp/mxs-rs-services".into()))
}

pub fn up_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/services/up.sh")
}

pub async fn pg(db: &str) -> tokio_postgres::Client {
    let port = pg_port();
    let conn = format!(
        "host=127.0.0.1 port={port} user=repl password=replpass dbname={db} connect_timeout=5"
    );
    let (c, conn) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!("PostgreSQL on 127.0.0.1:{port} is not reachable ({e}); start it with tests/services/up.sh pg, or set SYNC_TESTS_SKIP=1")
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

pub async fn etcd() -> etcd_client::Client {
    let c = tokio::time::timeout(
        Duration::from_secs(5),
        etcd_client::Client::connect([ETCD], None),
    )
    .await
    .ok()
    .and_then(|r| r.ok());
    let mut c = c.unwrap_or_else(|| panic!("etcd on {ETCD} is not reachable; start it with tests/services/up.sh etcd, or set SYNC_TESTS_SKIP=1"));
    c.status().await.unwrap_or_else(|e| {
        panic!("etcd on {ETCD} is not healthy ({e}); set SYNC_TESTS_SKIP=1 to skip")
    });
    c
}

/// All keys under `prefix`, with the prefix stripped, values parsed as JSON.
pub async fn etcd_map(c: &mut etcd_client::Client, prefix: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for _ in 0..20 {
        match c
            .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await
        {
            Ok(r) => {
                for kv in r.kvs() {
                    let k = kv.key_str().unwrap()[prefix.len()..].to_string();
                    let v: Value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
                    out.insert(k, v);
                }
                return out;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    panic!("etcd range {prefix} failed repeatedly");
}

/// Deletes every key under `prefix`, retrying while etcd refuses (e.g. "too many requests"
/// while it still applies a backlog): a benchmark that left its million keys behind made every
/// later compaction slow (40 s per settle with 3.5M keys).
pub async fn etcd_clear(c: &mut etcd_client::Client, prefix: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let r = c
            .delete(
                prefix,
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
        let left = c
            .get(
                prefix,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .map(|g| g.count());
        match (r, left) {
            (Ok(_), Ok(0)) => return,
            (r, left) => assert!(
                t0.elapsed() < Duration::from_secs(120),
                "etcd: could not delete {prefix}: {:?} / {:?}",
                r.err(),
                left
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub struct Tool {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub child: Option<Child>,
    pub starts: u32,
}

impl Tool {
    pub fn new(dir: &Path, name: &str, yaml: &str) -> Tool {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join(format!("{name}.yml"));
        std::fs::write(&cfg, yaml).unwrap();
        Tool {
            dir: dir.to_path_buf(),
            cfg,
            child: None,
            starts: 0,
        }
    }
    pub fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cfg.with_extension("log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("-c")
            .arg(&self.cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sync-tool");
        self.child = Some(child);
    }
    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// SIGTERM (graceful: resigns leadership).
    pub fn term(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    /// Sends a signal (`STOP`, `CONT`, …) to the running process.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("tool running");
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.cfg.with_extension("log")).unwrap_or_default()
    }
}

/// A tool with `yaml` (its etcd.path `path`), started, once its checkpoint says it streams.
pub async fn streaming_tool(dir: &Path, path: &str, yaml: &str) -> Tool {
    let mut tool = Tool::new(dir, "tool", yaml);
    tool.start();
    wait_streaming(
        &format!("/sync-tool/{path}"),
        Duration::from_secs(60),
        &mut tool,
    )
    .await;
    tool
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn pg_config(path: &str, slot: &str, include: &[&str], extra_sync: &str) -> String {
    let inc = include
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let port = pg_port();
    format!(
        "log_level: info\n\
         database: {{type: postgres, host: 127.0.0.1, port: {port}, user: repl, password: replpass, name: testdb, retry_period: 200ms}}\n\
         etcd: {{endpoints: [\"{ETCD}\"], path: {path}, dial_timeout: 5s, request_timeout: 10s}}\n\
         sync:\n  slot: {slot}\n  publication: {slot}\n  tables: {{include: [{inc}]}}\n  key_template: \"/{{path}}/{{schema}}.{{table}}/{{pk}}\"\n  lease_ttl: 2s\n  max_backoff: 2s\n{extra_sync}"
    )
}

/// Runs `sync-tool --dump-only` into `/<path>` and returns what it wrote.
pub async fn dump_only(dir: &Path, yaml: &str, path: &str) -> BTreeMap<String, Value> {
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{path}/")).await;
    let cfg = dir.join(format!("{path}.yml"));
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&cfg)
        .arg("--dump-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump-only failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = etcd_map(&mut e, &format!("/{path}/")).await;
    etcd_clear(&mut e, &format!("/{path}/")).await;
    etcd_clear(&mut e, &format!("/sync-tool/{path}/")).await;
    m
}

/// The last `n` lines of a log.
pub fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until `/<path>/` holds exactly `expected`; panics with a diff otherwise.
pub async fn wait_equal(
    path: &str,
    expected: &BTreeMap<String, Value>,
    timeout: Duration,
    tool_log: &dyn Fn() -> String,
) {
    let mut e = etcd().await;
    let deadline = Instant::now() + timeout;
    loop {
        let got = etcd_map(&mut e, &format!("/{path}/")).await;
        if &got == expected {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .take(5)
                .collect();
            let stale: Vec<_> = expected
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .take(3)
                .map(|(k, v)| format!("{k}: want {v} got {}", got[k]))
                .collect();
            let tail = last_lines(&tool_log(), 30);
            panic!(
                "etcd /{path}/ differs from the source: {} keys vs {} expected; missing {missing:?}; extra {extra:?}; stale {stale:?}\n--- tool log tail ---\n{tail}",
                got.len(),
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `sync-tool verify` with the tool's own configuration, repeated until it finds etcd equal to
/// the source; panics with its last report and the tool's log otherwise.
pub async fn wait_verified(tool: &Tool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let cfg = tool.cfg.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .arg("verify")
                .arg("-c")
                .arg(cfg)
                .args(["--settle", "0s"])
                .output()
        })
        .await
        .unwrap()
        .expect("run sync-tool verify");
        if out.status.success() {
            return;
        }
        // 3: differences; 1: an error (a source or etcd timeout on a loaded machine): again
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            matches!(out.status.code(), Some(1 | 3)),
            "verify failed: {report}"
        );
        if Instant::now() > deadline {
            let tail = last_lines(&tool.log(), 30);
            panic!("etcd differs from the source:\n{report}--- tool log tail ---\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the tool's checkpoint says it is streaming.
pub async fn wait_streaming(state: &str, timeout: Duration, tool: &mut Tool) {
    let mut e = etcd().await;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = e.get(format!("{state}/checkpoint"), None).await {
            if let Some(kv) = r.kvs().first() {
                let v: Value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
                if v["phase"] == "stream" {
                    return;
                }
            }
        }
        if let Some(st) = tool.exited() {
            panic!("sync-tool exited early ({st}):\n{}", tool.log());
        }
        assert!(
            Instant::now() < deadline,
            "sync-tool did not reach streaming:\n{}",
            tool.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn pg_cleanup(slot: &str, schemas: &[&str], path: &str) {
    let c = pg("testdb").await;
    for _ in 0..50 {
        let r = c
            .query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[&slot])
            .await;
        let left = c
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map(|r| r.len())
            .unwrap_or(0);
        if r.is_ok() && left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = c
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {slot}"))
        .await;
    for s in schemas {
        let _ = c
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .await;
    }
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{path}/")).await;
    etcd_clear(&mut e, &format!("/sync-tool/{path}/")).await;
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sync-tool-tests/{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub const MY_PORT: u16 = 3301;

/// Admin connection (app user) to the shared MariaDB, session time zone UTC.
pub async fn my() -> mysql_async::Conn {
    my_port(MY_PORT).await
}

pub async fn my_port(port: u16) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("apppass"))
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'"]);
    match tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("MariaDB on 127.0.0.1:{port} is not reachable ({e}); start it with tests/services/up.sh mariadb, or set SYNC_TESTS_SKIP=1"),
        Err(_) => panic!("MariaDB on 127.0.0.1:{port}: connect timed out; set SYNC_TESTS_SKIP=1 to skip"),
    }
}

/// Runs `;`-separated statements (no `;` inside literals).
pub async fn my_exec(c: &mut mysql_async::Conn, sql: &str) {
    use mysql_async::prelude::Queryable;
    for s in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        c.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

pub fn my_config_port(port: u16, path: &str, include: &[&str], extra_sync: &str) -> String {
    let inc = include
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "log_level: info\n\
         database: {{type: mysql, host: 127.0.0.1, port: {port}, user: repl, password: replpass, retry_period: 200ms}}\n\
         etcd: {{endpoints: [\"{ETCD}\"], path: {path}, dial_timeout: 5s, request_timeout: 10s}}\n\
         sync:\n  tables: {{include: [{inc}]}}\n  key_template: \"/{{path}}/{{schema}}.{{table}}/{{pk}}\"\n  lease_ttl: 2s\n  max_backoff: 2s\n{extra_sync}"
    )
}

pub fn my_config(path: &str, include: &[&str], extra_sync: &str) -> String {
    my_config_port(MY_PORT, path, include, extra_sync)
}

pub async fn my_cleanup(dbs: &[&str], path: &str) {
    let mut c = my().await;
    for d in dbs {
        let _ = mysql_async::prelude::Queryable::query_drop(
            &mut c,
            format!("DROP DATABASE IF EXISTS {d}"),
        )
        .await;
    }
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{path}/")).await;
    etcd_clear(&mut e, &format!("/sync-tool/{path}/")).await;
}

/// The tool's stored checkpoint (`<state>/checkpoint`), or Null.
pub async fn read_checkpoint(state: &str) -> Value {
    let mut e = etcd().await;
    let r = e
        .get(format!("{state}/checkpoint"), None)
        .await
        .expect("etcd get checkpoint");
    r.kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

/// Event end positions of a binlog file, as the server lists them (`SHOW BINLOG EVENTS`).
pub async fn binlog_boundaries(c: &mut mysql_async::Conn, file: &str) -> Vec<u64> {
    use mysql_async::prelude::Queryable;
    let rows: Vec<mysql_async::Row> = c
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap_or_else(|e| panic!("SHOW BINLOG EVENTS IN '{file}': {e}"));
    rows.iter().filter_map(|r| r.get::<u64, _>(4)).collect()
}

/// A MySQL checkpoint's file/pos must be an event boundary of that file on the server (the
/// binlog dump starts there), and the server must read an event from it.
pub async fn assert_valid_position(c: &mut mysql_async::Conn, cp: &Value) {
    use mysql_async::prelude::Queryable;
    let file = cp["file"].as_str().unwrap_or_default();
    let pos = cp["pos"].as_u64().unwrap_or(0);
    assert!(
        !file.is_empty() && pos >= 4,
        "checkpoint without a binlog position: {cp}"
    );
    let ends = binlog_boundaries(c, file).await;
    assert!(ends.contains(&pos), "checkpoint {file}:{pos} is not an event boundary of {file} (its events end at {:?}…): {cp}", &ends[..ends.len().min(12)]);
    c.query_drop(format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos} LIMIT 1"))
        .await
        .unwrap_or_else(|e| panic!("the server cannot read {file}:{pos}: {e}"));
}
