//! Private PostgreSQL servers (own port and data directory) of a chosen major: the Debian 15
//! binaries, or those that tests/services/pg_majors.sh installs under /opt/pg-embedded/<major>.
//! SYNC_PG_MAJOR=<major> makes the suites (pg.rs, pg_restart.rs, operations.rs) run on one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The major the suites run on: SYNC_PG_MAJOR, or None for the shared Debian 15 on 5433.
pub fn chosen_major() -> Option<String> {
    std::env::var("SYNC_PG_MAJOR")
        .ok()
        .filter(|m| !m.is_empty())
}

/// The server binaries of `major`: /opt/pg-embedded/<major>/bin (PG_EMBEDDED_DIR), else the
/// Debian package's.
pub fn bin_dir(major: &str) -> Option<PathBuf> {
    let embedded = std::env::var("PG_EMBEDDED_DIR").unwrap_or_else(|_| "/opt/pg-embedded".into());
    [
        PathBuf::from(embedded).join(major).join("bin"),
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
    ]
    .into_iter()
    .find(|d| d.join("postgres").exists() && d.join("initdb").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port below the ephemeral range (32768-) that nothing listens on, derived from the pid.
pub fn free_port(salt: u16) -> u16 {
    let base = 21000
        + ((std::process::id() as u16)
            .wrapping_mul(7)
            .wrapping_add(salt)
            % 5000)
            * 2;
    (0..200)
        .map(|i| base + i * 2)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("no free port")
}

pub struct PgServer {
    pub port: u16,
    pub major: String,
    bin: PathBuf,
    data: String,
}

/// The private server's superuser `postgres` (trust from 127.0.0.1).
pub async fn connect_superuser(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

impl PgServer {
    /// initdb + start: wal_level=logical, superuser `postgres` (trust from 127.0.0.1), others
    /// with SCRAM passwords.
    pub fn start(dir: &Path, port: u16, major: &str) -> PgServer {
        let bin = bin_dir(major).unwrap_or_else(|| {
            panic!("no PostgreSQL {major} server binaries: run tests/services/pg_majors.sh {major}")
        });
        let data = dir.join("pgdata");
        std::fs::create_dir_all(dir).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .unwrap();
        }
        let pg = PgServer {
            port,
            major: major.to_string(),
            bin,
            data: data.to_string_lossy().into_owned(),
        };
        let out = pg
            .cmd("initdb")
            .args([
                "-D",
                &pg.data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ])
            .args(["--locale=C", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb ({major}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // the smallest decoding memory (13+; 14+ streams a transaction past it, older majors
        // spill it to disk): a test's large transaction then really is streamed
        let work_mem = if major.parse::<u32>().unwrap_or(15) >= 13 {
            "logical_decoding_work_mem = '64kB'\n"
        } else {
            ""
        };
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n\
             password_encryption = 'scram-sha-256'\nfsync = off\nfull_page_writes = off\n{work_mem}",
            dir.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{}/postgresql.conf", pg.data))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        std::fs::write(
            format!("{}/pg_hba.conf", pg.data),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host replication postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host replication all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        pg.ctl(&["start"]);
        pg
    }

    /// Puts `lines` first in pg_hba.conf (they win over the defaults) and reloads.
    pub fn hba_first(&self, lines: &str) {
        let path = format!("{}/pg_hba.conf", self.data);
        let rest = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{lines}{rest}")).unwrap();
        self.ctl(&["reload"]);
    }

    fn cmd(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn ctl(&self, args: &[&str]) {
        let log = format!("{}/../pg.log", self.data);
        let out = self
            .cmd("pg_ctl")
            .args(["-D", &self.data, "-l", &log, "-w", "-t", "60", "-m", "fast"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (and removes `dir`) when process `pid` has ended, also when it never
    /// runs its destructors (a test binary's statics, a panic, a kill).
    pub fn stop_after(&self, pid: u32, dir: &Path) {
        let pg_ctl = self.bin.join("pg_ctl");
        let runas = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas}{} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            pg_ctl.display(),
            self.data,
            dir.display()
        );
        // not waited for: it outlives this process on purpose
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .args(["bash", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the private server's reaper");
    }

    /// The shared services' roles and database: repl/replpass (LOGIN REPLICATION) owning
    /// testdb, postgres/postgres.
    pub fn create_test_roles(&self) {
        let port = self.port;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (c, conn) = tokio_postgres::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
                    tokio_postgres::NoTls,
                )
                .await
                .expect("connect to the private server");
                tokio::spawn(conn);
                for sql in [
                    "ALTER ROLE postgres PASSWORD 'postgres'",
                    "CREATE ROLE repl WITH LOGIN REPLICATION PASSWORD 'replpass'",
                    "CREATE DATABASE testdb OWNER repl",
                ] {
                    c.batch_execute(sql)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            })
        })
        .join()
        .unwrap();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args(["-D", &self.data, "-m", "immediate", "stop"])
            .output();
    }
}

/// The port of the server the suites use: 5433, or (SYNC_PG_MAJOR set) a private server of
/// that major that this test process starts once and that stops when the process ends.
pub fn suite_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let Some(major) = chosen_major() else {
            return super::PG_PORT;
        };
        let dir =
            std::env::temp_dir().join(format!("sync-tool-tests/pg{major}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pg = PgServer::start(&dir, free_port(0), &major);
        pg.stop_after(std::process::id(), &dir);
        pg.create_test_roles();
        println!("PostgreSQL {major} (private) on 127.0.0.1:{}", pg.port);
        let port = pg.port;
        // kept running for the whole process; the reaper stops it
        std::mem::forget(pg);
        std::thread::sleep(Duration::from_millis(100));
        port
    })
}
