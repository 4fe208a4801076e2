//! A private MariaDB 10.11 for the tests that restart, crash or purge their server: its own
//! port and directory, so the shared server on 3301 is never touched. Users `app`/`apppass`
//! (everything) and `repl`/`replpass` (what the tool needs) exist.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateMaria {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateMaria {
    pub fn start(dir: &Path, port: u16) -> PrivateMaria {
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
        let _ = Command::new("chown")
            .args(["-R", "mysql:mysql"])
            .arg(dir)
            .status();
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}/my.cnf", d.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db (MariaDB server binaries needed)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = PrivateMaria {
            dir: d,
            port,
            child: None,
        };
        m.up();
        m.root_sql(
            "CREATE USER 'app'@'%' IDENTIFIED BY 'apppass'; GRANT ALL PRIVILEGES ON *.* TO 'app'@'%';
             CREATE USER 'repl'@'%' IDENTIFIED BY 'replpass';
             GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT, RELOAD, LOCK TABLES ON *.* TO 'repl'@'%';",
        );
        m
    }
    pub fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log/stdout.log"))
            .unwrap();
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
    /// SIGKILL: a crash (binlog file left without its closing rotate event).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// SIGTERM, waits for a clean shutdown.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
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
    pub fn set_server_id(&self, id: u32) {
        let p = self.dir.join("my.cnf");
        let cnf = std::fs::read_to_string(&p).unwrap();
        let cnf: String = cnf
            .lines()
            .map(|l| {
                if l.starts_with("server_id=") {
                    format!("server_id={id}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(p, cnf).unwrap();
    }
    pub fn root_sql(&self, sql: &str) {
        let out = Command::new("mariadb")
            .args([
                "-uroot",
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-e",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
