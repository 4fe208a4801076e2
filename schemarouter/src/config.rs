//! schemarouter's parameters: those of 24.02.3 and those of 2.3 that 24.02 dropped.
//!
//! Regexes compile with `fancy-regex`, so the PCRE2 syntax operators write for MaxScale works
//! here too, look-around and backreferences included: unanchored search, case-sensitive unless
//! `(?i)`. What it cannot parse is refused at configuration time with the parser's message; a
//! match that exceeds its backtracking limit counts as no match.

use bridge::params::{ParamKind, ParamSpec, Params, Reader};
use fancy_regex::Regex;
use std::time::Duration;

pub const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "ignore_tables",
        description: "List of tables to ignore when checking for duplicates",
        kind: ParamKind::StringList,
        default: Some(""),
    },
    ParamSpec {
        name: "ignore_tables_regex",
        description: "Regex of tables to ignore when checking for duplicates",
        kind: ParamKind::Regex,
        default: Some(""),
    },
    ParamSpec {
        name: "refresh_databases",
        description: "Refresh database mapping information",
        kind: ParamKind::Bool,
        default: Some("false"),
    },
    ParamSpec {
        name: "refresh_interval",
        description: "Database mapping refresh interval",
        kind: ParamKind::Seconds,
        default: Some("300s"),
    },
    ParamSpec {
        name: "max_staleness",
        description: "Maximum allowed staleness of the database map",
        kind: ParamKind::Seconds,
        default: Some("150s"),
    },
    ParamSpec {
        name: "debug",
        description: "Enable debug mode",
        kind: ParamKind::Bool,
        default: Some("false"),
    },
    // 2.3 generation.
    ParamSpec {
        name: "ignore_databases",
        description: "List of databases to ignore when checking for duplicates (2.3)",
        kind: ParamKind::StringList,
        default: Some(""),
    },
    ParamSpec {
        name: "ignore_databases_regex",
        description: "Regex of databases to ignore when checking for duplicates (2.3)",
        kind: ParamKind::Regex,
        default: Some(""),
    },
    ParamSpec {
        name: "preferred_server",
        description: "Server used when a database or table exists on several servers (2.3)",
        kind: ParamKind::Target,
        default: Some(""),
    },
];

#[derive(Debug, Clone)]
pub struct Config {
    pub ignore_tables: Vec<String>,
    pub ignore_tables_regex: Option<Regex>,
    pub refresh_databases: bool,
    pub refresh_interval: Duration,
    pub max_staleness: Duration,
    pub debug: bool,
    pub ignore_databases: Vec<String>,
    pub ignore_databases_regex: Option<Regex>,
    pub preferred_server: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_params(&Params::default()).expect("defaults are valid")
    }
}

fn regex(r: &Reader, name: &str) -> Result<Option<Regex>, String> {
    let pattern = r.regex(name)?;
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(&pattern)
        .map(Some)
        .map_err(|e| format!("Invalid regular expression '{pattern}' for '{name}': {e}"))
}

impl Config {
    pub fn from_params(p: &Params) -> Result<Config, String> {
        let r = Reader::new(PARAMS, p);
        for (k, _) in p.iter() {
            if !PARAMS.iter().any(|s| s.name == k) && !HOST_PARAMS.contains(&k) {
                return Err(format!("Unknown parameter '{k}' for schemarouter"));
            }
        }
        let refresh_interval = r.duration("refresh_interval")?;
        let max_staleness = r.duration("max_staleness")?;
        for (name, d) in [
            ("refresh_interval", refresh_interval),
            ("max_staleness", max_staleness),
        ] {
            if d.as_millis() % 1000 != 0 && d < Duration::from_secs(1) {
                return Err(format!(
                    "Invalid duration for '{name}': value must be defined in seconds"
                ));
            }
        }
        let preferred = r.string("preferred_server")?;
        Ok(Config {
            ignore_tables: r.list("ignore_tables")?,
            ignore_tables_regex: regex(&r, "ignore_tables_regex")?,
            refresh_databases: r.boolean("refresh_databases")?,
            refresh_interval: Duration::from_secs(refresh_interval.as_secs()),
            max_staleness: Duration::from_secs(max_staleness.as_secs()),
            debug: r.boolean("debug")?,
            ignore_databases: r.list("ignore_databases")?,
            ignore_databases_regex: regex(&r, "ignore_databases_regex")?,
            preferred_server: (!preferred.trim().is_empty()).then(|| preferred.trim().to_string()),
        })
    }

    /// Whether a duplicated entry (`db.table`, or `db.` for the database itself, lowercase)
    /// is exempt from the duplicate check.
    pub fn ignores(&self, db: &str, full: &str) -> bool {
        const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];
        SYSTEM.contains(&db)
            || self.ignore_tables.iter().any(|t| t == full)
            || self
                .ignore_tables_regex
                .as_ref()
                .is_some_and(|r| r.is_match(full).unwrap_or(false))
            || self
                .ignore_databases
                .iter()
                .any(|d| d.eq_ignore_ascii_case(db))
            || self
                .ignore_databases_regex
                .as_ref()
                .is_some_and(|r| r.is_match(db).unwrap_or(false))
    }
}

/// Parameters every service has, which the host may pass along: not ours to judge.
const HOST_PARAMS: &[&str] = &[];

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_params(&Params::new(kv.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert!(!c.refresh_databases && !c.debug);
        assert_eq!(c.refresh_interval, Duration::from_secs(300));
        assert_eq!(c.max_staleness, Duration::from_secs(150));
        assert!(
            c.ignore_tables.is_empty()
                && c.ignore_tables_regex.is_none()
                && c.preferred_server.is_none()
        );
    }

    #[test]
    fn values_and_errors() {
        let c = cfg(&[
            ("ignore_tables", " db1.t1 , db2. "),
            ("ignore_tables_regex", "/^db3/"),
            ("refresh_interval", "2min"),
            ("max_staleness", "5000ms"),
            ("ignore_databases", "Shared"),
            ("ignore_databases_regex", "^tmp_"),
            ("preferred_server", "s2"),
            ("refresh_databases", "true"),
        ])
        .unwrap();
        assert_eq!(c.ignore_tables, vec!["db1.t1", "db2."]);
        assert_eq!(c.refresh_interval, Duration::from_secs(120));
        assert_eq!(c.max_staleness, Duration::from_secs(5));
        assert_eq!(c.preferred_server.as_deref(), Some("s2"));
        assert!(
            c.ignores("db1", "db1.t1") && c.ignores("db2", "db2.") && !c.ignores("db2", "db2.t")
        );
        assert!(
            c.ignores("db3x", "db3x.t") && !c.ignores("xdb3", "xdb3.t"),
            "unanchored but ^ anchors"
        );
        assert!(
            c.ignores("shared", "shared.t"),
            "ignore_databases is case-insensitive"
        );
        assert!(
            c.ignores("tmp_1", "tmp_1.") && c.ignores("sys", "sys.x") && !c.ignores("db9", "db9.")
        );
        assert!(
            cfg(&[("ignore_tables", "DB1.T1")])
                .map(|c| !c.ignores("db1", "db1.t1"))
                .unwrap(),
            "case-sensitive as native"
        );

        assert!(cfg(&[("ignore_tables_regex", "(unclosed")])
            .unwrap_err()
            .contains("ignore_tables_regex"));
        assert!(cfg(&[("ignore_databases_regex", "a[")])
            .unwrap_err()
            .contains("ignore_databases_regex"));
        // PCRE2 look-around, as operators write it for the native module.
        let c = cfg(&[("ignore_tables_regex", "^(?!shop\\.)")]).unwrap();
        assert!(c.ignores("misc", "misc.t") && !c.ignores("shop", "shop.carts"));
        assert!(cfg(&[("refresh_interval", "300")])
            .unwrap_err()
            .contains("unit"));
        assert!(cfg(&[("max_staleness", "500ms")])
            .unwrap_err()
            .contains("seconds"));
        assert!(cfg(&[("refresh_databases", "maybe")])
            .unwrap_err()
            .contains("refresh_databases"));
        assert!(cfg(&[("auth_all_servers", "true")])
            .unwrap_err()
            .contains("Unknown parameter"));
        // Fractions of a second are truncated.
        assert_eq!(
            cfg(&[("refresh_interval", "1500ms")])
                .unwrap()
                .refresh_interval,
            Duration::from_secs(1)
        );
    }
}
