//! Where the test services are (tests/services/up.sh starts them) and where the built modules
//! are.

use std::path::PathBuf;

pub const USER: &str = "app";
pub const PASSWORD: &str = "apppass";

/// MariaDB ports: 3301 (binlog source), 3302, 3303.
pub fn mariadb_ports() -> Vec<u16> {
    std::env::var("MARIADB_PORTS")
        .unwrap_or_else(|_| "3301 3302 3303".into())
        .split_whitespace()
        .map(|p| p.parse().expect("MARIADB_PORTS holds port numbers"))
        .collect()
}

pub fn kafka_broker() -> String {
    std::env::var("KAFKA_BROKER").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A direct connection to a MariaDB test server (fails loudly if the services are not up).
pub fn mariadb(port: u16) -> mysql::Conn {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some(USER))
        .pass(Some(PASSWORD));
    mysql::Conn::new(opts).unwrap_or_else(|e| {
        panic!("MariaDB on 127.0.0.1:{port} is not reachable ({e}): run tests/services/up.sh")
    })
}

/// The target directory of the build that runs these tests (target/debug or target/release).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// The shared library of a module, as cargo built it for this profile.
pub fn module_path(name: &str) -> PathBuf {
    let p = target_dir().join(format!("lib{name}.so"));
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (make test does)",
        p.display()
    );
    p
}

/// A unique name for databases, topics and files of one test.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
