//! The configuration the tool runs with, read from a YAML file ([`file`]): the original
//! service's keys (`database.*`, `etcd.*`, `sync.dump`, `log_level`, and the rest of contrail's
//! files, see [`contrail`]) plus this tool's own (`sync.tables`, `sync.key_template`,
//! slot/publication names, HA and metrics settings). Unknown keys and bad values are errors at
//! start.

mod contrail;
mod file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::keys::KeyTemplate;
use file::de_duration;
pub use file::parse_duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub log_level: String,
    /// `text` (default) or `json`.
    pub log_format: String,
    pub database: Database,
    pub etcd: Etcd,
    pub sync: Sync,
    pub metrics: Metrics,
    /// What the start-up log says about the file (contrail keys and sections ignored).
    pub notices: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    #[serde(alias = "postgresql", alias = "pgx")]
    Postgres,
    #[serde(alias = "mariadb")]
    Mysql,
}

#[derive(Clone)]
pub struct Database {
    pub db_type: DbType,
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    pub password: String,
    /// PostgreSQL: the database to replicate. MySQL: the default database when
    /// `sync.tables.include` is empty (then all tables of `name` are selected).
    pub name: String,
    pub connection_retries: u32,
    pub retry_period: Duration,
    pub replication_status_timeout: Duration,
    /// MySQL/MariaDB: the replica server id this tool announces (must be unique among the
    /// server's replicas). Default 4000 + a random number below 1000.
    pub server_id: Option<u32>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("type", &self.db_type)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("name", &self.name)
            .finish()
    }
}

impl Database {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.db_type {
            DbType::Postgres => 5432,
            DbType::Mysql => 3306,
        })
    }
}

#[derive(Clone)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Key prefix (`{path}` in the key template), without slashes, e.g. `contrail`.
    pub path: String,
    pub dial_timeout: Duration,
    /// Per-request timeout (the original hard-coded 60 s).
    pub request_timeout: Duration,
    pub tls: EtcdTls,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("path", &self.path)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    #[serde(default)]
    pub enabled: bool,
    pub certificate_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    pub trusted_ca_path: Option<PathBuf>,
    /// In some of contrail's samples; the original reads `enabled`.
    #[serde(default)]
    enable: Option<IgnoredAny>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("enabled", &self.enabled)
            .field("certificate_path", &self.certificate_path)
            .field("key_path", &self.key_path)
            .field("trusted_ca_path", &self.trusted_ca_path)
            .finish()
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// contrail's `run` starts the Sync service only when it is true; sync-tool always runs.
    #[serde(default)]
    enabled: Option<bool>,
    /// Only `json` is supported.
    #[serde(default)]
    pub storage: Option<String>,
    /// Dump the selected tables before streaming (first start, lost slot/binlog).
    /// If false, the stream starts at the slot's consistent point with no initial copy.
    #[serde(default = "yes")]
    pub dump: bool,
    #[serde(default)]
    pub tables: Tables,
    #[serde(default = "default_template")]
    pub key_template: String,
    /// PostgreSQL replication slot name.
    #[serde(default = "default_slot")]
    pub slot: String,
    /// PostgreSQL publication name (created for the selected tables when missing).
    #[serde(default = "default_publication")]
    pub publication: String,
    /// etcd prefix for the tool's own keys (checkpoint, election). Must not lie under a
    /// table prefix. Default `/sync-tool/<etcd.path>`.
    pub state_path: Option<String>,
    /// etcd operations per transaction (server `--max-txn-ops`, default 128).
    #[serde(default = "default_max_ops")]
    pub max_txn_ops: usize,
    /// Upper bound for the bytes of one etcd transaction (server limit 1.5 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_txn_bytes: usize,
    /// etcd transactions sent before the first of them is answered. They still take effect
    /// strictly in order (each one is chained to the one before it).
    #[serde(default = "default_txns_in_flight")]
    pub txns_in_flight: usize,
    /// TTL of the HA election lease; a standby takes over at most about this long after
    /// the active instance died.
    #[serde(default = "default_lease_ttl", deserialize_with = "de_duration")]
    pub lease_ttl: Duration,
    /// Upper bound of the retry backoff.
    #[serde(default = "default_max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// What happens to the etcd keys of a table that left the selection.
    #[serde(default)]
    pub on_table_removed: OnTableRemoved,
    /// Rows per chunk of the incremental snapshot of a table added to the selection.
    #[serde(default = "default_snapshot_chunk")]
    pub snapshot_chunk: usize,
}

/// `sync.on_table_removed`: `delete` (default) removes the keys of a table that is no longer
/// selected, `keep` leaves them in etcd (no longer updated).
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnTableRemoved {
    #[default]
    Delete,
    Keep,
}

impl Default for Sync {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("defaults")
    }
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    /// `schema.table` patterns (`*` and `?` wildcards). Empty = every table
    /// (PostgreSQL: outside system schemas; MySQL: of `database.name`).
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// `host:port` of the Prometheus endpoint (`/metrics`); unset = no endpoint.
    pub address: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_template() -> String {
    "/{path}/{table}/{pk}".into()
}
fn default_slot() -> String {
    "sync_service".into()
}
fn default_publication() -> String {
    "syncpub".into()
}
fn default_max_ops() -> usize {
    128
}
fn default_txns_in_flight() -> usize {
    4
}
fn default_max_bytes() -> usize {
    1024 * 1024
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_snapshot_chunk() -> usize {
    1024
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let cfg = file::parse(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        match self.log_level.to_ascii_lowercase().as_str() {
            // fatal and panic: contrail's (logrus) levels above error
            "trace" | "debug" | "info" | "warn" | "warning" | "error" | "fatal" | "panic" => {}
            l => bail!("log_level: unknown level {l:?} (trace, debug, info, warn, error)"),
        }
        match self.log_format.as_str() {
            "text" | "json" => {}
            f => bail!("log_format: unknown format {f:?} (text or json)"),
        }
        if self.database.user.is_empty() {
            bail!("database.user must not be empty");
        }
        if self.database.host.is_empty() {
            bail!("database.host must not be empty");
        }
        if self.database.db_type == DbType::Postgres && self.database.name.is_empty() {
            bail!("database.name is required for PostgreSQL");
        }
        if self.database.retry_period.is_zero() {
            bail!("database.retry_period must be > 0");
        }
        if self.database.replication_status_timeout < Duration::from_millis(100) {
            bail!("database.replication_status_timeout must be at least 100ms");
        }
        if self.etcd.endpoints.is_empty() {
            bail!("etcd.endpoints must list at least one endpoint");
        }
        if self.etcd.path.is_empty() || self.etcd.path.contains('{') {
            bail!("etcd.path must be a non-empty prefix without braces");
        }
        if self.etcd.username.is_some() != self.etcd.password.is_some() {
            bail!("etcd.username and etcd.password must be given together");
        }
        if let Some(s) = &self.sync.storage {
            if s != "json" {
                bail!("sync.storage: only \"json\" is supported (got {s:?})");
            }
        }
        if self.etcd.tls.enabled
            && self.etcd.tls.certificate_path.is_some() != self.etcd.tls.key_path.is_some()
        {
            bail!("etcd.tls.certificate_path and etcd.tls.key_path must be given together");
        }
        if !valid_ident(&self.sync.slot) {
            bail!(
                "sync.slot {:?}: use lower-case letters, digits and _ (max 63)",
                self.sync.slot
            );
        }
        if !valid_ident(&self.sync.publication) {
            bail!(
                "sync.publication {:?}: use lower-case letters, digits and _ (max 63)",
                self.sync.publication
            );
        }
        if !(3..=10_000).contains(&self.sync.max_txn_ops) {
            bail!("sync.max_txn_ops must be between 3 and 10000");
        }
        if !(1..=64).contains(&self.sync.txns_in_flight) {
            bail!("sync.txns_in_flight must be between 1 and 64");
        }
        if !(1..=100_000).contains(&self.sync.snapshot_chunk) {
            bail!("sync.snapshot_chunk must be between 1 and 100000");
        }
        if self.sync.max_txn_bytes < 4096 {
            bail!("sync.max_txn_bytes must be at least 4096");
        }
        if self.sync.lease_ttl < Duration::from_secs(1) {
            bail!("sync.lease_ttl must be at least 1s");
        }
        for p in self
            .sync
            .tables
            .include
            .iter()
            .chain(&self.sync.tables.exclude)
        {
            if p.is_empty() {
                bail!("sync.tables: empty pattern");
            }
        }
        let tpl = self.key_template()?;
        let state = self.state_path();
        if !state.starts_with('/') || state.ends_with('/') {
            bail!("sync.state_path {state:?} must start with / and not end with /");
        }
        if tpl.static_prefix().starts_with(&format!("{state}/")) {
            bail!("sync.state_path {state:?} must not contain the table keys");
        }
        if let Some(a) = &self.metrics.address {
            a.parse::<std::net::SocketAddr>()
                .with_context(|| format!("metrics.address {a:?} is not host:port"))?;
        }
        Ok(())
    }

    pub fn key_template(&self) -> Result<KeyTemplate> {
        KeyTemplate::parse(&self.sync.key_template, &self.etcd.path).context("sync.key_template")
    }

    pub fn state_path(&self) -> String {
        self.sync
            .state_path
            .clone()
            .unwrap_or_else(|| format!("/sync-tool/{}", self.etcd.path.trim_matches('/')))
    }
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "database: {type: postgres, user: u, name: d}\netcd: {endpoints: [\"127.0.0.1:2379\"]}\n";

    #[test]
    fn defaults() {
        let c = Config::parse(MIN).unwrap();
        assert_eq!(c.database.port(), 5432);
        assert_eq!(c.database.connection_retries, 10);
        assert_eq!(c.database.retry_period, Duration::from_secs(1));
        assert_eq!(c.etcd.dial_timeout, Duration::from_secs(60));
        assert_eq!(c.sync.slot, "sync_service");
        assert_eq!(c.sync.publication, "syncpub");
        assert!(c.sync.dump);
        assert_eq!(c.state_path(), "/sync-tool/contrail");
    }

    #[test]
    fn unknown_key_is_error() {
        let e = Config::parse(&format!("{MIN}bogus: 1\n")).unwrap_err();
        assert!(format!("{e:#}").contains("bogus"), "{e:#}");
        let e = Config::parse(
            "database: {type: postgres, user: u, name: d, hots: x}\netcd: {endpoints: [a]}\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("hots"), "{e:#}");
    }

    #[test]
    fn bad_values() {
        assert!(Config::parse(&MIN.replace("postgres", "oracle")).is_err());
        let e =
            Config::parse(&format!("{MIN}sync: {{key_template: \"/x/{{table}}\"}}\n")).unwrap_err();
        assert!(format!("{e:#}").contains("{pk}"), "{e:#}");
        let e =
            Config::parse(&MIN.replace("name: d", "name: d, retry_period: 3 parsecs")).unwrap_err();
        assert!(format!("{e:#}").contains("duration"), "{e:#}");
        assert!(Config::parse(&format!("{MIN}log_level: loud\n")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
        // Go's (viper's) form, as contrail's files write them
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("600ms").unwrap(), Duration::from_millis(600));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert!(parse_duration("1m30").is_err());
        assert!(parse_duration("s").is_err());
    }

    /// The shape of contrail's Sync service file (`sample/sync.yml`): driver and type, a
    /// connection string next to the dedicated keys, empty etcd credentials.
    const CONTRAIL_SYNC: &str = "database:\n  driver: pgx\n  type: postgres\n  dialect: postgres\n  \
        connection: \"user=app dbname=db1 password=pw sslmode=disable\"\n  host: h1\n  user: app\n  \
        password: pw\n  name: db1\netcd:\n  endpoints:\n    - 127.0.0.1:2379\n  username: \"\"\n  password: \"\"\n";

    #[test]
    fn contrail_sync_file() {
        let c = Config::parse(CONTRAIL_SYNC).unwrap();
        assert_eq!(c.database.db_type, DbType::Postgres);
        assert_eq!(
            (
                c.database.host.as_str(),
                c.database.name.as_str(),
                c.database.password.as_str()
            ),
            ("h1", "db1", "pw")
        );
        assert_eq!(
            (c.etcd.username.as_deref(), c.etcd.password.as_deref()),
            (None, None),
            "empty means no authentication"
        );
        assert_eq!(c.log_level, "debug", "the original's default");
        assert_eq!(c.notices, vec!["ignoring keys of contrail's configuration that mean nothing to sync-tool: database.dialect".to_string()]);
        // a connection string alone fills the dedicated keys
        let only = "database: {driver: mysql, connection: \"host=m1 port=3307 user=u password=p dbname=d\"}\netcd: {endpoints: [e]}\n";
        let c = Config::parse(only).unwrap();
        assert_eq!(c.database.db_type, DbType::Mysql);
        assert_eq!(
            (
                c.database.host.as_str(),
                c.database.port(),
                c.database.user.as_str(),
                c.database.name.as_str()
            ),
            ("m1", 3307, "u", "d")
        );
        // ... and a conflict names both
        let e = format!(
            "{:#}",
            Config::parse(
                &CONTRAIL_SYNC
                    .replace("host: h1", "host: h1\n  port: 5433")
                    .replace("sslmode=disable", "sslmode=disable port=5432")
            )
            .unwrap_err()
        );
        assert!(
            e.contains("database.port (5433)") && e.contains("port=5432"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Config::parse(&CONTRAIL_SYNC.replace("driver: pgx", "driver: mysql")).unwrap_err()
        );
        assert!(
            e.contains("database.type") && e.contains("database.driver"),
            "{e}"
        );
    }

    /// The Watcher's file (`sample/watcher.yml`): driver only, top-level storage.
    #[test]
    fn contrail_watcher_file() {
        let w = "database:\n  driver: pgx\n  host: h\n  user: u\n  password: p\n  name: n\netcd:\n  endpoints: [e]\n  dial_timeout_s: 7\nstorage: json\n";
        let c = Config::parse(w).unwrap();
        assert_eq!(
            (
                c.database.db_type,
                c.etcd.dial_timeout,
                c.sync.storage.as_deref()
            ),
            (DbType::Postgres, Duration::from_secs(7), Some("json"))
        );
        assert!(c.notices.is_empty(), "{:?}", c.notices);
        let e = format!(
            "{:#}",
            Config::parse(&w.replace("storage: json", "storage: nested")).unwrap_err()
        );
        assert!(e.contains("nested"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(&w.replace("dial_timeout_s: 7", "dial_timeout_s: 7\n  dial_timeout: 8s"))
                .unwrap_err()
        );
        assert!(
            e.contains("etcd.dial_timeout_s") && e.contains("etcd.dial_timeout "),
            "{e}"
        );
    }

    /// The whole-process file (`sample/contrail_postgres.yml`): every service's section.
    #[test]
    fn contrail_whole_process_file() {
        let f = "database:\n  type: postgres\n  dialect: postgres\n  host: h\n  user: u\n  password: p\n  name: n\n  max_open_conn: 100\n  \
            connection_retries: 4\n  retry_period: 3s\n  replication_status_timeout: 10s\n  debug: false\n\
            etcd:\n  endpoints: [e]\n  username:\n  password:\n  path: contrail\n  grpc_insecure: true\n  tls:\n    enabled: false\n    certificate_path:\n    key_path:\n    trusted_ca_path:\n\
            log_level: info\nhomepage:\n  enabled: true\nserver:\n  enabled: true\n  address: \":9091\"\n  tls: {enabled: false}\n\
            no_auth: true\ninsecure: true\nsync:\n  enabled: true\n  storage: json\n  dump: true\nclient: {id: alice}\n\
            agent: {enabled: true, tasks: [{schema_id: x}]}\ncompilation: {enabled: false}\ncache: {enabled: true, timeout: 10s}\n\
            replication: {cassandra: {enabled: false}}\ncassandra: {host: localhost}\namqp: {url: \"amqp://x\"}\nkeystone: {local: true}\n";
        let c = Config::parse(f).unwrap();
        assert_eq!(
            (c.database.connection_retries, c.database.retry_period),
            (4, Duration::from_secs(3))
        );
        assert_eq!(c.log_level, "info");
        assert_eq!(
            c.notices,
            vec![
                "ignoring the sections of other contrail services: server, keystone, agent, cache, compilation, client, homepage, no_auth, insecure, replication, cassandra, amqp".to_string(),
                "ignoring keys of contrail's configuration that mean nothing to sync-tool: database.dialect, database.max_open_conn, database.debug, etcd.grpc_insecure, sync.enabled (contrail's `run` reads it; sync-tool always syncs)".to_string(),
            ]
        );
        // typo protection stays: neither sync-tool nor contrail knows these
        let e = format!(
            "{:#}",
            Config::parse(&f.replace("keystone:", "kestone:")).unwrap_err()
        );
        assert!(e.contains("kestone"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(&f.replace("max_open_conn", "max_open_con")).unwrap_err()
        );
        assert!(e.contains("max_open_con") && e.contains("database"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(&f.replace("storage: json", "storage: proto")).unwrap_err()
        );
        assert!(e.contains("sync.storage"), "{e}");
    }

    #[test]
    fn debug_hides_passwords() {
        let c = Config::parse(&MIN.replace("user: u", "user: u, password: hunter2")).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
