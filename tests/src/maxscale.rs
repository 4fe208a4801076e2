//! Runs a real MaxScale (given by MAXSCALE_BIN and MAXSCALE_LIBDIR, any supported release) with
//! a copy of its module directory in which chosen modules are replaced by ours. The original
//! directory is never changed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Installation {
    pub bin: PathBuf,
    pub libdir: PathBuf,
}

/// The MaxScale to test against, or None (the caller prints that the suite is skipped).
pub fn installation() -> Option<Installation> {
    let bin = std::env::var_os("MAXSCALE_BIN")?;
    let libdir = std::env::var_os("MAXSCALE_LIBDIR")?;
    Some(Installation {
        bin: bin.into(),
        libdir: libdir.into(),
    })
}

impl Installation {
    /// The release, from `maxscale --version` ("MaxScale 24.02.3").
    pub fn version(&self) -> String {
        let out = Command::new(&self.bin)
            .arg("--version")
            .output()
            .expect("run maxscale --version");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("maxscale --version said {text:?}"))
            .to_string()
    }

    /// Our module `lib<name>.so` of the release build, checked to be built for this MaxScale
    /// (else MaxScale would only log "version mismatch" and every test would fail obscurely).
    pub fn our_module(&self, name: &str) -> PathBuf {
        let release = crate::env::target_dir().parent().unwrap().join("release");
        let module = release.join(format!("lib{name}.so"));
        let built =
            std::fs::read_to_string(release.join("modules-maxscale-version")).unwrap_or_default();
        let want = self.version();
        assert!(
            module.exists() && built.trim() == want,
            "{} is not built for MaxScale {want} (built for: {:?}): run make with MAXSCALE_SRC set to a {want} source tree",
            module.display(),
            built.trim()
        );
        module
    }
}

pub struct MaxScale {
    child: Child,
    pub dir: tempfile::TempDir,
    pub admin_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ports for a MaxScale instance: (admin, listener).
pub fn ports() -> (u16, u16) {
    (free_port(), free_port())
}

impl MaxScale {
    /// Starts MaxScale with `config` (the `[maxscale]` section is added) and the module
    /// directory where each (name, file) of `replace` takes the place of lib<name>.so.
    pub fn start(
        inst: &Installation,
        admin_port: u16,
        config: &str,
        replace: &[(&str, &Path)],
    ) -> MaxScale {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        copy_dir(&inst.libdir, &lib);
        for (name, file) in replace {
            for e in std::fs::read_dir(&lib).unwrap().flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                if f == format!("lib{name}.so") || f.starts_with(&format!("lib{name}.so.")) {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
            std::fs::copy(file, lib.join(format!("lib{name}.so"))).unwrap();
        }
        for d in ["log", "cache", "data", "run", "persist"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let cnf = dir.path().join("maxscale.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[maxscale]\nthreads=2\nadmin_host=127.0.0.1\nadmin_port={admin_port}\nadmin_secure_gui=false\nlog_info=false\n\n{config}"
            ),
        )
        .unwrap();
        let p = |s: &str| {
            format!(
                "--{s}={}",
                dir.path().join(s.trim_end_matches("dir")).display()
            )
        };
        let child = Command::new(&inst.bin)
            .args(["--nodaemon", "--user=root", "--syslog=no"])
            .arg(format!("--config={}", cnf.display()))
            .args([p("logdir"), p("cachedir"), p("datadir"), p("persistdir")])
            .arg(format!("--piddir={}", dir.path().join("run").display()))
            .arg(format!("--libdir={}", lib.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start maxscale");
        let ms = MaxScale {
            child,
            dir,
            admin_port,
        };
        ms.wait_ready();
        ms
    }

    fn wait_ready(&self) {
        if !poll(Duration::from_secs(30), Duration::from_millis(200), || {
            self.get("/v1/maxscale").is_ok()
        }) {
            panic!("MaxScale did not start; log:\n{}", self.log());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/maxscale.log")).unwrap_or_default()
    }

    /// True once the log contains `text` (MaxScale writes its log asynchronously): 10 s.
    pub fn log_shows(&self, text: &str) -> bool {
        poll(Duration::from_secs(10), Duration::from_millis(100), || {
            self.log().contains(text)
        })
    }

    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, String> {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "-S",
            "-u",
            "admin:mariadb",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        let out = c
            .arg(format!("http://127.0.0.1:{}{path}", self.admin_port))
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        match code.trim().parse::<u16>() {
            Ok(c) if (200..300).contains(&c) => Ok(body.to_string()),
            _ => Err(format!(
                "{method} {path}: HTTP {code}: {body} {}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    pub fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let s = self.curl("GET", path, None)?;
        serde_json::from_str(&s).map_err(|e| e.to_string())
    }

    /// `maxctrl alter service <name> key=value …`
    pub fn alter_service(&self, name: &str, params: serde_json::Value) -> Result<(), String> {
        let body = serde_json::json!({"data": {"attributes": {"parameters": params}}});
        self.curl(
            "PATCH",
            &format!("/v1/services/{name}"),
            Some(&body.to_string()),
        )
        .map(|_| ())
    }

    /// `maxctrl call command <module> <command> <service>`
    pub fn call_command(
        &self,
        module: &str,
        command: &str,
        service: &str,
    ) -> Result<String, String> {
        self.curl(
            "POST",
            &format!("/v1/maxscale/modules/{module}/{command}?{service}"),
            None,
        )
    }

    /// The MaxScale process id (from its pid file).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("run/maxscale.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The process runs and its REST API answers.
    pub fn alive(&self) -> bool {
        let running = self.pid().is_some_and(|pid| {
            Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        });
        running && self.get("/v1/maxscale").is_ok()
    }

    /// Its resident set size (VmRSS of /proc/<pid>/status), in kB.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// How many client sessions it has (`GET /v1/sessions`).
    pub fn sessions(&self) -> Option<usize> {
        self.get("/v1/sessions").ok()?["data"]
            .as_array()
            .map(Vec::len)
    }

    /// Its connections to the servers (a session that ends must close its own: one left open
    /// takes its next event, e.g. the server closing it, to the freed session).
    pub fn backend_connections(&self) -> Option<u64> {
        let servers = self.get("/v1/servers").ok()?;
        servers["data"]
            .as_array()?
            .iter()
            .map(|s| s["attributes"]["statistics"]["connections"].as_u64())
            .sum()
    }

    /// Waits until no session and no backend connection is left (`timeout`); else says what is.
    pub fn wait_idle(&self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            match (self.sessions(), self.backend_connections()) {
                (Some(0), Some(0)) => return Ok(()),
                (n, c) if Instant::now() > end => {
                    return Err(format!(
                        "{timeout:?} after their clients went: {n:?} sessions, {c:?} backend connections left"
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// MaxScale is up, serves a new client on each listener (`SELECT 1`), and every session
    /// ended, with its backend connections (30 s).
    pub fn healthy(&self, ports: &[u16]) -> Result<(), String> {
        if !self.alive() {
            return Err("MaxScale is not running".into());
        }
        for &port in ports {
            let t = Some(Duration::from_secs(10));
            let opts = client_opts(port, None)
                .tcp_connect_timeout(t)
                .read_timeout(t)
                .write_timeout(t);
            let mut c = mysql::Conn::new(opts)
                .map_err(|e| format!("port {port}: no new connection: {e}"))?;
            let one: Option<u32> = mysql::prelude::Queryable::query_first(&mut c, "SELECT 1")
                .map_err(|e| format!("port {port}: SELECT 1 failed: {e}"))?;
            if one != Some(1) {
                return Err(format!("port {port}: SELECT 1 returned {one:?}"));
            }
        }
        self.wait_idle(Duration::from_secs(30))
    }

    /// Fails the test with `what` and `err`, MaxScale's alerts (its crash handler logs the
    /// signal and the crashing thread's stack as alerts) and the end of its log; the whole log
    /// is kept in a file.
    pub fn fail(&self, what: &str, err: &str) -> ! {
        let log = self.log();
        let kept = std::env::temp_dir().join(format!(
            "maxscale_failure_{}_{}.log",
            std::process::id(),
            self.admin_port
        ));
        let _ = std::fs::write(&kept, &log);
        let alerts: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("alert"))
            .take(80)
            .collect();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "{what}: {err}\nMaxScale log kept in {}; alerts:\n{}\nlast lines:\n{}",
            kept.display(),
            alerts.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// `maxctrl set server <name> <state>` (`clear`: `maxctrl clear server`); `force` also
    /// closes the server's connections (maintenance).
    pub fn server_state(
        &self,
        name: &str,
        state: &str,
        clear: bool,
        force: bool,
    ) -> Result<(), String> {
        let verb = if clear { "clear" } else { "set" };
        let force = if force { "&force=yes" } else { "" };
        self.curl(
            "PUT",
            &format!("/v1/servers/{name}/{verb}?state={state}{force}"),
            None,
        )
        .map(|_| ())
    }

    /// The state MaxScale shows for a server ("Master, Running", "Down", ...).
    pub fn server_state_of(&self, name: &str) -> String {
        self.get(&format!("/v1/servers/{name}"))
            .ok()
            .and_then(|v| v["data"]["attributes"]["state"].as_str().map(String::from))
            .unwrap_or_default()
    }

    /// Waits until a server is Running in MaxScale's view.
    pub fn wait_running(&self, server: &str) {
        let running = || {
            self.get(&format!("/v1/servers/{server}")).is_ok_and(|v| {
                v["data"]["attributes"]["state"]
                    .as_str()
                    .is_some_and(|s| s.contains("Running"))
            })
        };
        if !poll(Duration::from_secs(30), Duration::from_millis(200), running) {
            panic!("server {server} never became Running; log:\n{}", self.log());
        }
    }
}

impl Drop for MaxScale {
    fn drop(&mut self) {
        // SIGTERM for a clean shutdown (the exporters flush), then make sure it is gone.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        if poll(Duration::from_secs(15), Duration::from_millis(100), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `done` every `every` until it says true (true) or `timeout` passed (false).
fn poll(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(every);
    }
}

fn client_opts(port: u16, db: Option<&str>) -> mysql::OptsBuilder {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some(crate::env::USER))
        .pass(Some(crate::env::PASSWORD))
        .db_name(db)
        .prefer_socket(false)
}

/// One connection attempt through a MaxScale listener that is already up.
pub fn try_client(port: u16, db: Option<&str>) -> mysql::Result<mysql::Conn> {
    mysql::Conn::new(client_opts(port, db))
}

/// A client connection through a MaxScale listener, retried while the listener starts (20 s).
pub fn client(port: u16, db: Option<&str>) -> mysql::Conn {
    let opts = client_opts(port, db);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match mysql::Conn::new(opts.clone()) {
            Ok(c) => return c,
            Err(e) if Instant::now() > end => panic!("cannot connect through MaxScale: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            // Follow symlinks: the copy must not depend on the original directory.
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}
