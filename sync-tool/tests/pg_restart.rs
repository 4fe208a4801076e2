//! PostgreSQL and etcd restarted mid-stream. The test starts its own private PostgreSQL cluster
//! (15, or the major SYNC_PG_MAJOR names) and etcd member (other ports, temporary directories)
//! so that restarting them does not disturb the shared services; it stops them at the end.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::pg_server::{chosen_major, connect_superuser, PgServer};
use std::time::{Duration, Instant};

use common::*;

struct PrivateEtcd {
    dir: String,
    port: u16,
    child: Option<Child>,
}

impl PrivateEtcd {
    fn start(dir: &Path, port: u16) -> PrivateEtcd {
        let mut e = PrivateEtcd {
            dir: dir.join("etcd").to_string_lossy().into_owned(),
            port,
            child: None,
        };
        e.spawn();
        e
    }
    fn spawn(&mut self) {
        let (c, p) = (self.port, self.port + 1);
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir", &self.dir])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{c}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{c}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{p}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args([
                "--initial-cluster",
                &format!("t=http://127.0.0.1:{p}"),
                "--logger",
                "zap",
                "--log-outputs",
                &format!("{}.log", self.dir),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd binary needed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", c)).is_err() {
            assert!(Instant::now() < deadline, "private etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(1500));
        self.spawn();
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn etcd_at(port: u16) -> etcd_client::Client {
    etcd_client::Client::connect([format!("127.0.0.1:{port}")], None)
        .await
        .unwrap()
}

fn config(pg_port: u16, etcd_port: u16, path: &str) -> String {
    format!(
        "database: {{type: postgres, host: 127.0.0.1, port: {pg_port}, user: postgres, password: x, name: postgres, retry_period: 200ms}}\n\
         etcd: {{endpoints: [\"127.0.0.1:{etcd_port}\"], path: {path}, dial_timeout: 3s, request_timeout: 5s}}\n\
         sync: {{tables: {{include: [\"app.*\"]}}, slot: s_{path}, publication: p_{path}, lease_ttl: 2s, max_backoff: 1s, max_txn_ops: 32}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_and_etcd_restarted_mid_stream() {
    if skip("pg_and_etcd_restarted_mid_stream") {
        return;
    }
    let name = unique("restart");
    let dir = tmpdir(&name);
    // three ports (PostgreSQL, etcd client and peer) below the ephemeral range (32768-), where a
    // client socket of another program could hold one
    let base = 20000 + (std::process::id() % 4000) as u16 * 3;
    let (pg_port, etcd_port) = (base, base + 1);
    let major = chosen_major().unwrap_or_else(|| "15".into());
    let pg = PgServer::start(&dir.join("pg"), pg_port, &major);
    let mut etcd = PrivateEtcd::start(&dir, etcd_port);
    let c = connect_superuser(pg_port).await;
    c.batch_execute(
        "CREATE SCHEMA app; CREATE TABLE app.w (id bigint PRIMARY KEY, v int, t text);
         CREATE TABLE app.c (a int, b text, n int, PRIMARY KEY (a, b));
         INSERT INTO app.w SELECT i, i, 'seed' FROM generate_series(1, 1000) i;",
    )
    .await
    .unwrap();
    let mut tool = Tool::new(&dir, "tool", &config(pg_port, etcd_port, "live"));
    tool.start();
    // workload that survives the PostgreSQL restart (failed transactions are rolled back)
    let w = tokio::spawn(async move {
        let mut rows = 0usize;
        let mut next = 1000i64;
        let mut c = connect_superuser(pg_port).await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(9) {
            let sql = {
                use rand::Rng;
                let mut rng = rand::thread_rng();
                let mut sql = String::from("BEGIN;");
                for _ in 0..20 {
                    next += 1;
                    match rng.gen_range(0..4) {
                        0 | 1 => {
                            sql.push_str(&format!("INSERT INTO app.w VALUES ({next}, 1, 'x');"))
                        }
                        2 => sql.push_str(&format!(
                            "UPDATE app.w SET v = v + 1 WHERE id = {};",
                            rng.gen_range(1..next)
                        )),
                        _ => sql.push_str(&format!(
                            "DELETE FROM app.w WHERE id = {};",
                            rng.gen_range(1..next)
                        )),
                    }
                }
                sql.push_str("COMMIT;");
                sql
            };
            if c.batch_execute(&sql).await.is_ok() {
                rows += 20;
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Ok((nc, conn)) = tokio_postgres::connect(
                    &format!("host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"),
                    tokio_postgres::NoTls,
                )
                .await
                {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    c = nc;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rows
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.ctl(&["restart"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| etcd.restart());
    let rows = w.await.unwrap();
    println!("workload: {rows} row changes across a PostgreSQL and an etcd restart");
    assert!(tool.exited().is_none(), "tool died:\n{}", tool.log());

    // expected = a fresh dump of the source
    let dcfg = dir.join("dump.yml");
    std::fs::write(&dcfg, config(pg_port, etcd_port, "expect")).unwrap();
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&dcfg)
        .arg("--dump-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut e = etcd_at(etcd_port).await;
    let expected = etcd_map(&mut e, "/expect/").await;
    assert!(expected.len() > 1000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = etcd_map(&mut e, "/live/").await;
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd differs from the source after restarts ({} vs {} keys)\n{}",
            got.len(),
            expected.len(),
            tool.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = tool.log();
    assert!(log.contains("resuming from checkpoint"), "{log}");
    tool.term();
    drop(pg);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
