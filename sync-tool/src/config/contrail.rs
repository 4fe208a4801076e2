//! contrail's configuration files, read as they are: the Watcher's `watcher.yml`, the Sync
//! service's `sync.yml` and the whole-process `contrail.yml` that every contrail service
//! reads. What their keys mean here, and the notices for what is ignored.

use std::str::FromStr;

use anyhow::{bail, Result};

/// The notices a configuration gives at start: one for the other services' sections, one for
/// the keys that mean nothing here.
#[derive(Default)]
pub struct Notices {
    sections: Vec<&'static str>,
    ignored: Vec<String>,
}

impl Notices {
    pub fn sections(&mut self, names: &[&'static str]) {
        self.sections.extend_from_slice(names);
    }

    pub fn ignored(&mut self, key: impl Into<String>) {
        self.ignored.push(key.into());
    }

    pub fn into_lines(self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.sections.is_empty() {
            out.push(format!(
                "ignoring the sections of other contrail services: {}",
                self.sections.join(", ")
            ));
        }
        if !self.ignored.is_empty() {
            out.push(format!(
                "ignoring keys of contrail's configuration that mean nothing to sync-tool: {}",
                self.ignored.join(", ")
            ));
        }
        out
    }
}

/// The values of `database.connection` (a libpq connection string, `key=value …` or a
/// `postgresql://` URI) that sync-tool uses.
#[derive(Default, Debug, PartialEq)]
pub struct Connection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
}

/// Parses `database.connection` with tokio-postgres' libpq parser (unknown options are errors
/// naming them). Options that make no difference here are named in the notice; one that cannot
/// be honoured (TLS required, several hosts) is an error.
pub fn parse_connection(s: &str, notices: &mut Notices) -> Result<Connection> {
    use tokio_postgres::config::{
        ChannelBinding, Host, LoadBalanceHosts, SslMode, TargetSessionAttrs,
    };
    let c = tokio_postgres::Config::from_str(s)
        .map_err(|e| anyhow::Error::new(e).context("database.connection"))?;
    if c.get_ssl_mode() == SslMode::Require {
        bail!("database.connection: sslmode=require, but sync-tool connects to the database without TLS (use sslmode=disable or prefer)");
    }
    if c.get_hosts().len() > 1 || c.get_hostaddrs().len() > 1 || c.get_ports().len() > 1 {
        bail!("database.connection: several hosts or ports; sync-tool connects to one server");
    }
    let host = match (c.get_hostaddrs().first(), c.get_hosts().first()) {
        (Some(ip), _) => Some(ip.to_string()),
        (None, Some(Host::Tcp(h))) => Some(h.clone()),
        (None, Some(Host::Unix(p))) => {
            bail!("database.connection: host={} is a Unix socket directory; sync-tool connects over TCP", p.display())
        }
        (None, None) => None,
    };
    let ignored = [
        ("options", c.get_options().is_some()),
        ("application_name", c.get_application_name().is_some()),
        ("connect_timeout", c.get_connect_timeout().is_some()),
        ("tcp_user_timeout", c.get_tcp_user_timeout().is_some()),
        (
            "keepalives",
            !c.get_keepalives()
                || c.get_keepalives_interval().is_some()
                || c.get_keepalives_retries().is_some(),
        ),
        (
            "target_session_attrs",
            c.get_target_session_attrs() != TargetSessionAttrs::Any,
        ),
        (
            "channel_binding",
            c.get_channel_binding() != ChannelBinding::Prefer,
        ),
        (
            "load_balance_hosts",
            c.get_load_balance_hosts() != LoadBalanceHosts::Disable,
        ),
    ];
    for (k, _) in ignored.iter().filter(|(_, given)| *given) {
        notices.ignored(format!("database.connection {k}"));
    }
    let password = c
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Ok(Connection {
        host,
        port: c.get_ports().first().copied(),
        user: c.get_user().map(str::to_string),
        password,
        dbname: c.get_dbname().map(str::to_string),
    })
}

/// A value given by its own key and/or by `database.connection`: the key wins where only it is
/// given, the connection string fills in where the key is absent, and two different values are
/// an error naming both.
pub fn merge<T: PartialEq + std::fmt::Display>(
    key: &str,
    own: Option<T>,
    conn_key: &str,
    conn: Option<T>,
) -> Result<Option<T>> {
    match (own, conn) {
        (Some(a), Some(b)) if a != b => {
            bail!("{key} ({a}) and {conn_key}={b} in database.connection disagree; keep one")
        }
        (a, b) => Ok(a.or(b)),
    }
}

/// [`merge`] for a password: the error does not show it.
pub fn merge_secret(
    key: &str,
    own: Option<String>,
    conn_key: &str,
    conn: Option<String>,
) -> Result<Option<String>> {
    match (own, conn) {
        (Some(a), Some(b)) if a != b => {
            bail!("{key} and {conn_key}= in database.connection disagree; keep one")
        }
        (a, b) => Ok(a.or(b)),
    }
}

/// The value codec: `storage` (the Watcher's key) and `sync.storage` (the Sync service's);
/// sync-tool writes JSON, which both name `json`.
pub fn storage(top: Option<&str>, sync: Option<&str>) -> Result<Option<String>> {
    for (key, v) in [("storage", top), ("sync.storage", sync)] {
        match v {
            None | Some("json") => {}
            Some(v) => bail!("{key}: {v:?} is not supported; sync-tool stores every row as one JSON value (json)"),
        }
    }
    Ok(top.or(sync).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        let mut n = Notices::default();
        let c = parse_connection(
            "user=root dbname=contrail_test password='p w' sslmode=disable host=db1 port=5433",
            &mut n,
        )
        .unwrap();
        assert_eq!(
            c,
            Connection {
                host: Some("db1".into()),
                port: Some(5433),
                user: Some("root".into()),
                password: Some("p w".into()),
                dbname: Some("contrail_test".into()),
            }
        );
        assert!(n.into_lines().is_empty());
        let mut n = Notices::default();
        let c = parse_connection(
            "postgresql://u:secret@10.0.0.5:6000/app?application_name=x",
            &mut n,
        )
        .unwrap();
        assert_eq!(
            (c.host.as_deref(), c.port, c.password.as_deref()),
            (Some("10.0.0.5"), Some(6000), Some("secret"))
        );
        assert_eq!(n.into_lines(), vec!["ignoring keys of contrail's configuration that mean nothing to sync-tool: database.connection application_name"]);
        let e = parse_connection("user=root bogus=1", &mut Notices::default()).unwrap_err();
        assert!(format!("{e:#}").contains("bogus"), "{e:#}");
        let e = parse_connection("sslmode=require", &mut Notices::default()).unwrap_err();
        assert!(format!("{e:#}").contains("without TLS"), "{e:#}");
        let e = parse_connection("host=a,b", &mut Notices::default()).unwrap_err();
        assert!(format!("{e:#}").contains("several hosts"), "{e:#}");
    }

    #[test]
    fn merging() {
        assert_eq!(
            merge("database.host", None, "host", Some("b")).unwrap(),
            Some("b")
        );
        assert_eq!(
            merge("database.host", Some("a"), "host", None).unwrap(),
            Some("a")
        );
        assert_eq!(
            merge("database.host", Some("a"), "host", Some("a")).unwrap(),
            Some("a")
        );
        let e = merge("database.host", Some("a"), "host", Some("b"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("database.host (a)") && e.contains("host=b"),
            "{e}"
        );
        let e = merge_secret(
            "database.password",
            Some("x1".into()),
            "password",
            Some("y2".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            !e.contains("x1") && !e.contains("y2") && e.contains("database.password"),
            "{e}"
        );
    }

    #[test]
    fn storages() {
        assert_eq!(
            storage(Some("json"), None).unwrap().as_deref(),
            Some("json")
        );
        assert!(storage(None, None).unwrap().is_none());
        assert!(storage(Some("nested"), None)
            .unwrap_err()
            .to_string()
            .contains("storage: \"nested\""));
        assert!(storage(None, Some("proto"))
            .unwrap_err()
            .to_string()
            .contains("sync.storage: \"proto\""));
    }
}
