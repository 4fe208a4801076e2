//! A MariaDB server of one test's own (own port and directory), for what must never be done
//! to the shared servers: pausing it (SIGSTOP) or ending it. The `app` user is created as on
//! the shared servers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateServer {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateServer {
    /// Installs and starts a server (a few seconds); panics with the reason if it cannot.
    pub fn start() -> PrivateServer {
        let dir = tempfile::Builder::new()
            .prefix("mxsrs-maria")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["data", "run", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = free_port();
        let cnf = format!(
            "[mariadbd]\nuser=mysql\ndatadir={d}/data\nport={port}\nbind_address=127.0.0.1\nsocket={d}/run/mysqld.sock\n\
             pid_file={d}/run/mysqld.pid\nlog_error={d}/log/error.log\nskip_name_resolve=1\n\
             innodb_buffer_pool_size=32M\ninnodb_flush_log_at_trx_commit=2\n",
            d = d.display()
        );
        std::fs::write(d.join("my.cnf"), cnf).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "mysql:mysql"])
            .arg(&d)
            .status();
        // One installation at a time: two at once in one process failed (threads of a test).
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}/my.cnf", d.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db (MariaDB server binaries needed)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        drop(installing);
        let mut s = PrivateServer {
            _dir: dir,
            data: d,
            port,
            child: None,
        };
        s.run();
        s.root_sql(&format!(
            "CREATE USER '{u}'@'%' IDENTIFIED BY '{p}'; GRANT ALL PRIVILEGES ON *.* TO '{u}'@'%' WITH GRANT OPTION",
            u = crate::env::USER,
            p = crate::env::PASSWORD
        ))
        .unwrap();
        s
    }

    /// Starts mariadbd on the data directory and waits until it answers.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("log/stdout.log"))
            .unwrap();
        let child = Command::new("mariadbd")
            .arg(format!("--defaults-file={}/my.cnf", self.data.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.root_sql("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "private mariadbd did not start: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ends the server (SIGKILL: a crash) and waits until it is gone; its port refuses.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a stopped server again, same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.run();
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.data.join("log/error.log")).unwrap_or_default()
    }

    /// Runs SQL as root through the mariadb client.
    pub fn root_sql(&self, sql: &str) -> Result<(), String> {
        let out = Command::new("mariadb")
            .args([
                "-uroot",
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-e",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// KILLs, from the server side, the connections of the test user (all but the caller's;
    /// with `db`, those whose current database it is) and says how many.
    pub fn kill_connections(&self, db: Option<&str>) -> usize {
        use mysql::prelude::Queryable;
        let mut c = crate::env::mariadb(self.port);
        let mut sql = format!(
            "SELECT id FROM information_schema.processlist WHERE user = '{}' AND id <> CONNECTION_ID()",
            crate::env::USER
        );
        if let Some(db) = db {
            sql.push_str(&format!(" AND db = '{db}'"));
        }
        let ids: Vec<u64> = c.query(sql).unwrap();
        // One may have ended meanwhile (unknown thread id): not a failure.
        ids.iter()
            .filter(|id| c.query_drop(format!("KILL {id}")).is_ok())
            .count()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Pauses the server: connections open (the kernel accepts them) but nothing is answered,
    /// logins included.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
