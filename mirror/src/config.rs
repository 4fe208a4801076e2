//! mirror's parameters: the native router's (same names, types and defaults) and ours, whose
//! defaults keep the native behaviour.

use bridge::params::{ParamKind, ParamSpec, Params, Reader};

pub const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "main", description: "Server from which responses are returned", kind: ParamKind::Target, default: None },
    ParamSpec { name: "exporter", description: "Exporter to use", kind: ParamKind::Enum(&["log", "file", "kafka"]), default: None },
    ParamSpec { name: "file", description: "File where data is exported", kind: ParamKind::String, default: Some("") },
    ParamSpec { name: "kafka_broker", description: "Kafka broker to use", kind: ParamKind::String, default: Some("") },
    ParamSpec { name: "kafka_topic", description: "Kafka topic where data is exported", kind: ParamKind::String, default: Some("") },
    ParamSpec {
        name: "on_error",
        description: "What to do when a non-main connection fails",
        kind: ParamKind::Enum(&["ignore", "close"]),
        default: Some("ignore"),
    },
    ParamSpec {
        name: "report",
        description: "When to generate the report for an SQL command",
        kind: ParamKind::Enum(&["always", "on_conflict"]),
        default: Some("always"),
    },
    ParamSpec {
        name: "sync",
        description: "Wait for every target before the client gets main's answer (false: only for main)",
        kind: ParamKind::Bool,
        default: Some("true"),
    },
    ParamSpec {
        name: "max_backlog",
        description: "With sync=false, bytes of requests that may wait for a slow target before it is dropped (e.g. 16Mi)",
        kind: ParamKind::String,
        default: Some("16Mi"),
    },
    ParamSpec {
        name: "max_backlog_requests",
        description: "With sync=false, requests that may wait for a slow target before it is dropped (0: no limit but max_backlog)",
        kind: ParamKind::String,
        default: Some("0"),
    },
    ParamSpec {
        name: "reconnect",
        description: "Connect a lost non-main target again for later requests, with the session state restored",
        kind: ParamKind::Bool,
        default: Some("false"),
    },
    ParamSpec {
        name: "report_diff",
        description: "Add to a conflicting result where it first differs from main's",
        kind: ParamKind::Bool,
        default: Some("false"),
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExporterConfig {
    Log,
    File { path: String },
    Kafka { broker: String, topic: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Ignore,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportWhen {
    Always,
    OnConflict,
}

/// How far a target may fall behind main with sync=false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub bytes: u64,
    /// 0: no limit on the count.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub main: String,
    pub exporter: ExporterConfig,
    pub on_error: OnError,
    pub report: ReportWhen,
    pub sync: bool,
    pub backlog: Backlog,
    pub reconnect: bool,
    pub report_diff: bool,
}

/// A size as MaxScale writes them: a number with an optional suffix, k/M/G/T for powers of
/// 1000 and Ki/Mi/Gi/Ti for powers of 1024 (case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size '{s}': expected a number with an optional suffix such as 16Mi")
    })?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1000,
        "ki" => 1 << 10,
        "m" => 1_000_000,
        "mi" => 1 << 20,
        "g" => 1_000_000_000,
        "gi" => 1 << 30,
        "t" => 1_000_000_000_000,
        "ti" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size suffix in '{s}': expected k, Ki, M, Mi, G, Gi, T or Ti"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

impl Config {
    /// Reads and checks a complete parameter set. The error texts of the native router are
    /// kept for the cross-parameter rules.
    pub fn from_params(p: &Params) -> Result<Config, String> {
        let r = Reader::new(PARAMS, p);
        let main = r.string("main")?;
        if main.is_empty() {
            return Err("'main' must name a server or service".into());
        }
        let exporter = match r.enumeration("exporter")? {
            "log" => ExporterConfig::Log,
            "file" => {
                let path = r.string("file")?;
                if path.is_empty() {
                    return Err("'file' must be defined when exporter=file is used.".into());
                }
                ExporterConfig::File { path }
            }
            _ => {
                let (broker, topic) = (r.string("kafka_broker")?, r.string("kafka_topic")?);
                if broker.is_empty() || topic.is_empty() {
                    return Err("Both 'kafka_broker' and 'kafka_topic' must be defined when exporter=kafka is used.".into());
                }
                ExporterConfig::Kafka { broker, topic }
            }
        };
        let on_error = if r.enumeration("on_error")? == "close" {
            OnError::Close
        } else {
            OnError::Ignore
        };
        let report = if r.enumeration("report")? == "on_conflict" {
            ReportWhen::OnConflict
        } else {
            ReportWhen::Always
        };
        let bytes =
            parse_size(&r.string("max_backlog")?).map_err(|e| format!("'max_backlog': {e}"))?;
        if bytes == 0 {
            return Err("'max_backlog' must be above 0".into());
        }
        let count = r.string("max_backlog_requests")?;
        let requests = count
            .trim()
            .parse()
            .map_err(|_| format!("'max_backlog_requests': invalid count '{count}': expected a whole number (0: no limit)"))?;
        Ok(Config {
            main,
            exporter,
            on_error,
            report,
            sync: r.boolean("sync")?,
            backlog: Backlog { bytes, requests },
            reconnect: r.boolean("reconnect")?,
            report_diff: r.boolean("report_diff")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_params(&Params::new(kv.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = cfg(&[("main", "s1"), ("exporter", "log")]).unwrap();
        assert_eq!(
            (c.on_error, c.report, c.exporter),
            (OnError::Ignore, ReportWhen::Always, ExporterConfig::Log)
        );
        assert!(c.sync && !c.reconnect && !c.report_diff);
        assert_eq!(
            c.backlog,
            Backlog {
                bytes: 16 << 20,
                requests: 0
            }
        );
    }

    #[test]
    fn cross_parameter_errors() {
        assert_eq!(
            cfg(&[("main", "s1"), ("exporter", "file")]).unwrap_err(),
            "'file' must be defined when exporter=file is used."
        );
        assert!(
            cfg(&[("main", "s1"), ("exporter", "kafka"), ("kafka_broker", "b")])
                .unwrap_err()
                .starts_with("Both 'kafka_broker'")
        );
        assert!(cfg(&[("exporter", "log")])
            .unwrap_err()
            .contains("'main' is mandatory"));
        assert!(cfg(&[("main", "s1"), ("exporter", "syslog")])
            .unwrap_err()
            .contains("expected one of log, file, kafka"));
        assert!(cfg(&[("main", "s1"), ("exporter", "log"), ("on_error", "retry")]).is_err());
    }

    #[test]
    fn new_parameters_are_checked() {
        let base = [("main", "s1"), ("exporter", "log")];
        let with = |kv: (&str, &str)| {
            let mut v = base.to_vec();
            v.push(kv);
            cfg(&v)
        };
        assert_eq!(with(("max_backlog", "1Ki")).unwrap().backlog.bytes, 1024);
        assert_eq!(
            with(("max_backlog", "2M")).unwrap().backlog.bytes,
            2_000_000
        );
        assert_eq!(with(("max_backlog", "4096")).unwrap().backlog.bytes, 4096);
        assert!(with(("max_backlog", "16Xi"))
            .unwrap_err()
            .contains("invalid size suffix"));
        assert!(with(("max_backlog", "lots"))
            .unwrap_err()
            .contains("'max_backlog': invalid size"));
        assert!(with(("max_backlog", "0")).unwrap_err().contains("above 0"));
        assert!(with(("max_backlog", "99999999999Ti"))
            .unwrap_err()
            .contains("too large"));
        assert_eq!(
            with(("max_backlog_requests", "100"))
                .unwrap()
                .backlog
                .requests,
            100
        );
        assert!(with(("max_backlog_requests", "-1"))
            .unwrap_err()
            .contains("max_backlog_requests"));
        assert!(!with(("sync", "false")).unwrap().sync);
        assert!(with(("sync", "maybe")).unwrap_err().contains("'sync'"));
        assert!(with(("reconnect", "true")).unwrap().reconnect);
        assert!(with(("report_diff", "on")).unwrap().report_diff);
    }
}
