//! YAML configuration: the original service's keys (`database.*`, `etcd.*`, `sync.dump`,
//! `log_level`) plus this tool's own (`sync.tables`, `sync.key_template`, slot/publication
//! names, HA and metrics settings). Unknown keys and bad values are errors at start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};

use crate::keys::KeyTemplate;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    pub database: Database,
    pub etcd: Etcd,
    #[serde(default)]
    pub sync: Sync,
    #[serde(default)]
    pub metrics: Metrics,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    #[serde(alias = "postgresql", alias = "pgx")]
    Postgres,
    #[serde(alias = "mariadb")]
    Mysql,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Database {
    #[serde(rename = "type")]
    pub db_type: DbType,
    #[serde(default = "default_host")]
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// PostgreSQL: the database to replicate. MySQL: the default database when
    /// `sync.tables.include` is empty (then all tables of `name` are selected).
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_connection_retries")]
    pub connection_retries: u32,
    #[serde(default = "default_retry_period", deserialize_with = "de_duration")]
    pub retry_period: Duration,
    #[serde(default = "default_status_timeout", deserialize_with = "de_duration")]
    pub replication_status_timeout: Duration,
    /// MySQL/MariaDB: the replica server id this tool announces (must be unique among the
    /// server's replicas). Default 4000 + a random number below 1000.
    #[allow(dead_code)]
    pub server_id: Option<u32>,
    /// Accepted for compatibility with the original's configuration; not used.
    #[serde(default)]
    #[allow(dead_code)]
    pub dialect: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub max_open_conn: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    pub debug: Option<bool>,
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

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Key prefix (`{path}` in the key template), without slashes, e.g. `contrail`.
    #[serde(default = "default_etcd_path")]
    pub path: String,
    #[serde(default = "default_dial_timeout", deserialize_with = "de_duration")]
    pub dial_timeout: Duration,
    /// Per-request timeout (the original hard-coded 60 s).
    #[serde(default = "default_dial_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Accepted for compatibility; TLS is controlled by `etcd.tls.enabled`.
    #[serde(default)]
    #[allow(dead_code)]
    pub grpc_insecure: Option<bool>,
    #[serde(default)]
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

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    #[serde(default)]
    pub enabled: bool,
    pub certificate_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    pub trusted_ca_path: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Accepted for compatibility with `contrail.yml`; the tool always runs.
    #[serde(default)]
    #[allow(dead_code)]
    pub enabled: Option<bool>,
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
fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> String {
    "text".into()
}
fn default_host() -> String {
    "localhost".into()
}
fn default_connection_retries() -> u32 {
    10
}
fn default_retry_period() -> Duration {
    Duration::from_secs(1)
}
fn default_status_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_etcd_path() -> String {
    "contrail".into()
}
fn default_dial_timeout() -> Duration {
    Duration::from_secs(60)
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
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// Parses `250ms`, `10s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?} (expected e.g. 500ms, 10s, 1m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => bail!("invalid duration unit {u:?} in {s:?} (use ms, s, m or h)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("invalid duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(f64),
        S(String),
    }
    let secs = match Raw::deserialize(d)? {
        Raw::N(n) => {
            if !n.is_finite() || n < 0.0 {
                return Err(serde::de::Error::custom(format!("invalid duration {n}")));
            }
            return Ok(Duration::from_secs_f64(n));
        }
        Raw::S(s) => s,
    };
    parse_duration(&secs).map_err(serde::de::Error::custom)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = serde_yaml_ng::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        match self.log_level.to_ascii_lowercase().as_str() {
            "trace" | "debug" | "info" | "warn" | "warning" | "error" => {}
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
        if self.etcd.tls.enabled && self.etcd.tls.certificate_path.is_some() != self.etcd.tls.key_path.is_some() {
            bail!("etcd.tls.certificate_path and etcd.tls.key_path must be given together");
        }
        if !valid_ident(&self.sync.slot) {
            bail!("sync.slot {:?}: use lower-case letters, digits and _ (max 63)", self.sync.slot);
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
        if self.sync.max_txn_bytes < 4096 {
            bail!("sync.max_txn_bytes must be at least 4096");
        }
        if self.sync.lease_ttl < Duration::from_secs(1) {
            bail!("sync.lease_ttl must be at least 1s");
        }
        for p in self.sync.tables.include.iter().chain(&self.sync.tables.exclude) {
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
        KeyTemplate::parse(&self.sync.key_template, &self.etcd.path)
            .context("sync.key_template")
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
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "database: {type: postgres, user: u, name: d}\netcd: {endpoints: [\"127.0.0.1:2379\"]}\n";

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
        let e = Config::parse("database: {type: postgres, user: u, name: d, hots: x}\netcd: {endpoints: [a]}\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("hots"), "{e:#}");
    }

    #[test]
    fn bad_values() {
        assert!(Config::parse(&MIN.replace("postgres", "oracle")).is_err());
        let e = Config::parse(&format!("{MIN}sync: {{key_template: \"/x/{{table}}\"}}\n")).unwrap_err();
        assert!(format!("{e:#}").contains("{pk}"), "{e:#}");
        let e = Config::parse(&MIN.replace("name: d", "name: d, retry_period: 3 parsecs")).unwrap_err();
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
    }

    #[test]
    fn debug_hides_passwords() {
        let c = Config::parse(&MIN.replace("user: u", "user: u, password: hunter2")).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
