//! What a configuration file may contain, as read by serde (unknown keys are errors with their
//! YAML path and line): sync-tool's own keys and those of contrail's files. [`resolve`] turns it
//! into the [`Config`] the tool runs with.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::contrail::{self, Notices};
use super::{Config, Database, DbType, Etcd, EtcdTls, Metrics, Sync};

/// Declares the file's top level; the sections of the other contrail services that share
/// contrail's whole-process file are listed once, as fields whose content is ignored.
macro_rules! raw_config {
    ($($other:ident),* $(,)?) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawConfig {
            log_level: Option<String>,
            #[serde(default = "default_log_format")]
            log_format: String,
            database: RawDatabase,
            etcd: RawEtcd,
            #[serde(default)]
            sync: Sync,
            #[serde(default)]
            metrics: Metrics,
            /// contrail's Watcher (`watcher.yml`): the value codec.
            storage: Option<String>,
            $(
                #[serde(default)]
                $other: Option<IgnoredAny>,
            )*
        }

        impl RawConfig {
            /// The other services' sections the file has.
            fn other_sections(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(
                    if self.$other.is_some() {
                        v.push(stringify!($other));
                    }
                )*
                v
            }
        }
    };
}

raw_config!(
    server,
    keystone,
    agent,
    cache,
    compilation,
    client,
    homepage,
    no_auth,
    insecure,
    auth_type,
    aaa_mode,
    replication,
    cassandra,
    amqp,
    commander,
    watcher,
    test_database,
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(rename = "type")]
    db_type: Option<DbType>,
    /// contrail's name for the type: `pgx` or `mysql`.
    driver: Option<DbType>,
    /// contrail's libpq-style connection string.
    connection: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    name: Option<String>,
    #[serde(default = "default_connection_retries")]
    connection_retries: u32,
    #[serde(default = "default_retry_period", deserialize_with = "de_duration")]
    retry_period: Duration,
    #[serde(default = "default_status_timeout", deserialize_with = "de_duration")]
    replication_status_timeout: Duration,
    server_id: Option<u32>,
    // contrail's, meaningless here
    dialect: Option<IgnoredAny>,
    max_open_conn: Option<IgnoredAny>,
    debug: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    endpoints: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default = "default_etcd_path")]
    path: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    dial_timeout: Option<Duration>,
    /// contrail's Watcher: the dial timeout in seconds.
    dial_timeout_s: Option<u64>,
    #[serde(default = "default_dial_timeout", deserialize_with = "de_duration")]
    request_timeout: Duration,
    /// contrail's; TLS is `etcd.tls.enabled` here.
    grpc_insecure: Option<IgnoredAny>,
    #[serde(default)]
    tls: EtcdTls,
}

pub fn parse(text: &str) -> Result<Config> {
    let raw: RawConfig = serde_yaml_ng::from_str(text)?;
    resolve(raw)
}

fn resolve(raw: RawConfig) -> Result<Config> {
    let mut notices = Notices::default();
    let sections = raw.other_sections();
    let db = raw.database;
    let e = raw.etcd;
    // a file only contrail writes: the original's defaults apply where they differ
    let contrail_file = !sections.is_empty()
        || db.driver.is_some()
        || db.connection.is_some()
        || raw.storage.is_some()
        || e.dial_timeout_s.is_some();
    notices.sections(&sections);

    let db_type = match (db.db_type, db.driver) {
        (Some(t), Some(d)) if t != d => {
            bail!("database.type ({t:?}) and database.driver ({d:?}) name different databases; keep one")
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => bail!("database.type is required: postgres or mysql (contrail's database.driver pgx | mysql works too)"),
    };
    let conn = match &db.connection {
        Some(s) => contrail::parse_connection(s, &mut notices)?,
        None => Default::default(),
    };
    let host = contrail::merge("database.host", db.host, "host", conn.host)?;
    let port = contrail::merge("database.port", db.port, "port", conn.port)?;
    let user = contrail::merge("database.user", db.user, "user", conn.user)?;
    let password =
        contrail::merge_secret("database.password", db.password, "password", conn.password)?;
    let name = contrail::merge("database.name", db.name, "dbname", conn.dbname)?;
    for (key, given) in [
        ("dialect", &db.dialect),
        ("max_open_conn", &db.max_open_conn),
        ("debug", &db.debug),
    ] {
        if given.is_some() {
            notices.ignored(format!("database.{key}"));
        }
    }
    if e.grpc_insecure.is_some() {
        notices.ignored("etcd.grpc_insecure");
    }
    if e.tls.enable.is_some() {
        notices.ignored("etcd.tls.enable (the original reads etcd.tls.enabled)");
    }
    if raw.sync.enabled.is_some() {
        notices.ignored("sync.enabled (contrail's `run` reads it; sync-tool always syncs)");
    }
    let dial_timeout = match (e.dial_timeout, e.dial_timeout_s.map(Duration::from_secs)) {
        (Some(a), Some(b)) if a != b => {
            bail!("etcd.dial_timeout ({a:?}) and etcd.dial_timeout_s ({b:?}) disagree; keep one")
        }
        (a, b) => a.or(b).unwrap_or_else(default_dial_timeout),
    };
    let storage = contrail::storage(raw.storage.as_deref(), raw.sync.storage.as_deref())?;
    // contrail writes `username: ""` for "no authentication"
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let log_level = raw.log_level.unwrap_or_else(|| {
        if contrail_file {
            "debug".into()
        } else {
            "info".into()
        }
    });
    Ok(Config {
        log_level,
        log_format: raw.log_format,
        database: Database {
            db_type,
            host: host.unwrap_or_else(|| "localhost".into()),
            port,
            user: user.context("database.user is required (or user= in database.connection)")?,
            password: password.unwrap_or_default(),
            name: name.unwrap_or_default(),
            connection_retries: db.connection_retries,
            retry_period: db.retry_period,
            replication_status_timeout: db.replication_status_timeout,
            server_id: db.server_id,
        },
        etcd: Etcd {
            endpoints: e.endpoints,
            username: nonempty(e.username),
            password: nonempty(e.password),
            path: e.path,
            dial_timeout,
            request_timeout: e.request_timeout,
            tls: e.tls,
        },
        sync: Sync {
            storage,
            ..raw.sync
        },
        metrics: raw.metrics,
        notices: notices.into_lines(),
    })
}

pub fn default_log_format() -> String {
    "text".into()
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
pub fn default_dial_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Parses a duration as Go (and so contrail) writes them, `1m30s`, `1.5h`, `250ms`, `10us`,
/// or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return secs(n, s);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(split);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n: f64 = num
            .parse()
            .with_context(|| format!("invalid duration {s:?} (expected e.g. 500ms, 10s, 1m30s)"))?;
        total += n * match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => bail!("invalid duration unit {u:?} in {s:?} (use ns, us, ms, s, m or h)"),
        };
        rest = next;
    }
    secs(total, s)
}

fn secs(n: f64, s: &str) -> Result<Duration> {
    if !n.is_finite() || n < 0.0 {
        bail!("invalid duration {s:?}");
    }
    Ok(Duration::from_secs_f64(n))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    N(f64),
    S(String),
}

impl RawDuration {
    fn duration<E: serde::de::Error>(self) -> std::result::Result<Duration, E> {
        match self {
            RawDuration::N(n) => secs(n, &n.to_string()),
            RawDuration::S(s) => parse_duration(&s),
        }
        .map_err(E::custom)
    }
}

pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    RawDuration::deserialize(d)?.duration()
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    Option::<RawDuration>::deserialize(d)?
        .map(RawDuration::duration)
        .transpose()
}
