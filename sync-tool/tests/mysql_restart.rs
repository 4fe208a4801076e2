//! A private MariaDB 10.11 (own port and directory, so the shared server on 3301 is never
//! restarted or purged): restarted mid-stream (the tool resumes, equality holds), then its
//! binlog is purged while the tool is down (the tool detects it, re-dumps, stale keys go).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

struct PrivateMaria {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateMaria {
    fn start(dir: &Path, port: u16) -> PrivateMaria {
        let d = dir.join("maria");
        for sub in ["data", "run", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let cnf = format!(
            "[mariadbd]\nuser=mysql\ndatadir={d}/data\nport={port}\nbind_address=127.0.0.1\nsocket={d}/run/mysqld.sock\n\
             pid_file={d}/run/mysqld.pid\nlog_error={d}/log/error.log\nserver_id=7\nskip_name_resolve=1\n\
             innodb_buffer_pool_size=32M\ninnodb_flush_log_at_trx_commit=2\nlog_bin={d}/log/binlog\nbinlog_format=ROW\n\
             binlog_row_image=FULL\nbinlog_row_metadata=FULL\n",
            d = d.display()
        );
        std::fs::write(d.join("my.cnf"), cnf).unwrap();
        let _ = Command::new("chown").args(["-R", "mysql:mysql"]).arg(dir).status();
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}/my.cnf", d.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db (MariaDB server binaries needed)");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let mut m = PrivateMaria { dir: d, port, child: None };
        m.up();
        m
    }
    fn up(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log/stdout.log")).unwrap();
        let child = Command::new("mariadbd")
            .arg(format!("--defaults-file={}/my.cnf", self.dir.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Command::new("mariadb-admin")
            .args(["-uroot", "-h127.0.0.1", &format!("-P{}", self.port), "ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "private mariadbd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn set_server_id(&self, id: u32) {
        let p = self.dir.join("my.cnf");
        let cnf = std::fs::read_to_string(&p).unwrap();
        let cnf: String = cnf
            .lines()
            .map(|l| if l.starts_with("server_id=") { format!("server_id={id}\n") } else { format!("{l}\n") })
            .collect();
        std::fs::write(p, cnf).unwrap();
    }
    fn root_sql(&self, sql: &str) {
        let out = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", &format!("-P{}", self.port), "-e", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivateMaria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_private_server_restart_and_purged_binlog() {
    if skip("mysql_private_server_restart_and_purged_binlog") {
        return;
    }
    let name = unique("myrestart");
    let dir = tmpdir(&name);
    let port = 3390 + (std::process::id() % 50) as u16;
    let mut srv = PrivateMaria::start(&dir, port);
    srv.root_sql(
        "CREATE USER 'app'@'%' IDENTIFIED BY 'apppass'; GRANT ALL PRIVILEGES ON *.* TO 'app'@'%';
         CREATE USER 'repl'@'%' IDENTIFIED BY 'replpass';
         GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT, RELOAD, LOCK TABLES ON *.* TO 'repl'@'%';",
    );
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(20));
             INSERT INTO {name}.t SELECT seq, 'init' FROM {name}.seq_1_to_200"
        ),
    )
    .await;
    drop(c);
    let include = format!("{name}.*");
    let yaml = my_config_port(port, &name, &[&include], "");
    let mut tool = Tool::new(&dir, "tool", &yaml);
    tool.start();
    wait_streaming(&format!("/sync-tool/{name}"), Duration::from_secs(60), &mut tool).await;

    // writes, restart of the server, more writes
    let mut c = my_port(port).await;
    my_exec(&mut c, &format!("INSERT INTO {name}.t SELECT seq, 'before' FROM {name}.seq_1000_to_1100")).await;
    drop(c);
    srv.down();
    tokio::time::sleep(Duration::from_secs(1)).await;
    srv.up();
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!(
            "INSERT INTO {name}.t SELECT seq, 'after' FROM {name}.seq_2000_to_2100;
             UPDATE {name}.t SET v = 'upd' WHERE id <= 50;
             DELETE FROM {name}.t WHERE id BETWEEN 60 AND 70"
        ),
    )
    .await;
    let path2 = format!("{name}ref");
    let ref_yaml = my_config_port(port, &path2, &[&include], "");
    let expected = dump_only(&dir, &ref_yaml, &path2).await;
    assert_eq!(expected.len(), 200 + 101 + 101 - 11);
    wait_equal(&name, &expected, Duration::from_secs(60), &|| tool.log()).await;

    // failover look-alike: the server comes back with another server_id (a different server
    // identity for the tool) while the tool is down; rows written meanwhile. The tool must not
    // re-dump but resume from the GTID position stored in its checkpoint.
    tool.term();
    let cp = etcd_map(&mut etcd().await, &format!("/sync-tool/{name}/")).await;
    let gtid = cp["checkpoint"]["gtid"].as_str().unwrap_or_default().to_string();
    assert!(gtid.starts_with("0-7-"), "checkpoint has the GTID of the last transaction: {cp:?}");
    my_exec(&mut c, &format!("INSERT INTO {name}.t SELECT seq, 'failover' FROM {name}.seq_3000_to_3020")).await;
    drop(c);
    srv.down();
    srv.set_server_id(8);
    srv.up();
    let mut c = my_port(port).await;
    my_exec(&mut c, &format!("UPDATE {name}.t SET v = 'on-new' WHERE id = 3001")).await;
    tool.start();
    let expected = dump_only(&dir, &ref_yaml, &path2).await;
    assert_eq!(expected.len(), 200 + 101 + 101 - 11 + 21);
    wait_equal(&name, &expected, Duration::from_secs(60), &|| tool.log()).await;
    let log = tool.log();
    assert!(log.contains("resuming from its GTID position"), "{log}");
    assert_eq!(log.matches("dump: snapshot taken").count(), 1, "no re-dump after the identity change: {log}");
    let cp = etcd_map(&mut etcd().await, &format!("/sync-tool/{name}/")).await;
    assert_eq!(cp["checkpoint"]["server"], "server_id:8", "{cp:?}");
    assert!(cp["checkpoint"]["gtid"].as_str().unwrap_or_default().starts_with("0-8-"), "{cp:?}");

    // tool down; rows deleted/updated; the binlog holding them purged
    tool.term();
    my_exec(
        &mut c,
        &format!(
            "DELETE FROM {name}.t WHERE id > 2050;
             UPDATE {name}.t SET v = 'while-down' WHERE id BETWEEN 100 AND 110;
             FLUSH BINARY LOGS"
        ),
    )
    .await;
    let (file, _): (String, u64) = {
        let r: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (r.get(0).unwrap(), r.get(1).unwrap())
    };
    c.query_drop(format!("PURGE BINARY LOGS TO '{file}'")).await.unwrap();
    tool.start();
    let expected = dump_only(&dir, &ref_yaml, &path2).await;
    assert_eq!(expected.len(), 200 + 101 + 51 - 11);
    wait_equal(&name, &expected, Duration::from_secs(60), &|| tool.log()).await;
    assert!(tool.log().contains("purged"), "{}", tool.log());
    // and it streams again after the re-dump
    my_exec(&mut c, &format!("INSERT INTO {name}.t VALUES (9999, 'late')")).await;
    let mut expected = expected;
    expected.insert(format!("{name}.t/9999"), serde_json::json!({"id": 9999, "v": "late"}));
    wait_equal(&name, &expected, Duration::from_secs(30), &|| tool.log()).await;

    tool.term();
    drop(c);
    srv.down();
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{name}/")).await;
    etcd_clear(&mut e, &format!("/sync-tool/{name}/")).await;
    let _ = std::fs::remove_dir_all(&dir);
}
