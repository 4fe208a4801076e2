//! mirror's parameters (the same names, types and defaults as MaxScale's native mirror).

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub main: String,
    pub exporter: ExporterConfig,
    pub on_error: OnError,
    pub report: ReportWhen,
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
        let on_error = if r.enumeration("on_error")? == "close" { OnError::Close } else { OnError::Ignore };
        let report = if r.enumeration("report")? == "on_conflict" { ReportWhen::OnConflict } else { ReportWhen::Always };
        Ok(Config { main, exporter, on_error, report })
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
        assert_eq!((c.on_error, c.report, c.exporter), (OnError::Ignore, ReportWhen::Always, ExporterConfig::Log));
    }

    #[test]
    fn cross_parameter_errors() {
        assert_eq!(cfg(&[("main", "s1"), ("exporter", "file")]).unwrap_err(), "'file' must be defined when exporter=file is used.");
        assert!(cfg(&[("main", "s1"), ("exporter", "kafka"), ("kafka_broker", "b")]).unwrap_err().starts_with("Both 'kafka_broker'"));
        assert!(cfg(&[("exporter", "log")]).unwrap_err().contains("'main' is mandatory"));
        assert!(cfg(&[("main", "s1"), ("exporter", "syslog")]).unwrap_err().contains("expected one of log, file, kafka"));
        assert!(cfg(&[("main", "s1"), ("exporter", "log"), ("on_error", "retry")]).is_err());
    }
}
