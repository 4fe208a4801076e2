//! Command-line options.

use clap::Parser;
use std::fmt;
use std::path::PathBuf;

/// Reads the mirror router's export and says how the compared servers differ from main: by
/// query class, how often, how (rows, errors, warnings, data) and how much slower.
#[derive(Parser, Debug)]
#[command(name = "mirror-report", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Export files: JSON Lines, plain or gzip (detected by content). Rotated files can be
    /// given together; they are read oldest first (by modification time). No file or `-`
    /// reads standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Read the export from a Kafka topic on this broker (host:port) instead of files.
    #[arg(
        long,
        value_name = "BROKER",
        requires = "topic",
        conflicts_with = "files"
    )]
    pub kafka: Option<String>,

    /// The Kafka topic the mirror exports to.
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,

    /// Read as this consumer group: start where the group's last run stopped and commit
    /// where this one stops. Without it the whole topic is read and nothing is committed.
    #[arg(long, value_name = "GROUP", requires = "kafka")]
    pub group: Option<String>,

    /// Give up on the broker after this long without an answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub kafka_timeout: u64,

    /// The target whose answers the client got (the mirror's `main`). Default: the first
    /// target of the first report.
    #[arg(long, value_name = "TARGET")]
    pub main: Option<String>,

    /// A target on the same version as main. Classes where it differs from main are
    /// non-deterministic: their conflicts are reported apart, not as upgrade differences.
    #[arg(long, value_name = "TARGET")]
    pub baseline: Option<String>,

    /// Exit with status 1 when the upgrade conflicts exceed N statements, or a rate of all
    /// compared statements (`0.5%` or `0.005`).
    #[arg(long, value_name = "N|RATE")]
    pub fail_on_conflicts: Option<Threshold>,

    /// Print the verdict as JSON (schema mirror-report/1) instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Also write the verdict as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Classes shown per table in the terminal.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Classes kept apart; statements of further classes are counted together.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_classes: u64,

    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

const AFTER_HELP: &str = "\
Exit status: 0 the verdict was written (and conflicts are within --fail-on-conflicts),
1 conflicts exceed --fail-on-conflicts, 2 an error (bad options, unreadable input,
unreachable broker). Lines that are not reports are counted and shown, never an error.

Examples:
  mirror-report /var/log/maxscale/mirror.jsonl*
  mirror-report --main old --baseline old2 --html report.html mirror.jsonl.gz
  mirror-report --kafka 127.0.0.1:9092 --topic mirror --json --fail-on-conflicts 0.1%";

/// How many upgrade conflicts are too many.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Count(u64),
    /// A fraction of the compared statements (0..1).
    Rate(f64),
}

impl Threshold {
    pub fn exceeded(self, conflicts: u64, rate: f64) -> bool {
        match self {
            Threshold::Count(n) => conflicts > n,
            Threshold::Rate(r) => rate > r,
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a count (e.g. 10) or a rate (e.g. 0.5% or 0.005)");
        let rate = |r: f64| {
            if (0.0..=1.0).contains(&r) {
                Ok(Threshold::Rate(r))
            } else {
                Err(format!("rate '{s}' is not between 0 and 100 %"))
            }
        };
        if let Some(p) = s.strip_suffix('%') {
            return rate(p.trim().parse::<f64>().map_err(|_| bad())? / 100.0);
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Threshold::Count(n));
        }
        rate(s.parse::<f64>().map_err(|_| bad())?)
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{n} statements"),
            Threshold::Rate(r) => write!(f, "{} %", r * 100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn thresholds() {
        assert_eq!("10".parse::<Threshold>(), Ok(Threshold::Count(10)));
        assert_eq!("0.5%".parse::<Threshold>(), Ok(Threshold::Rate(0.005)));
        assert_eq!("0.005".parse::<Threshold>(), Ok(Threshold::Rate(0.005)));
        assert!("x".parse::<Threshold>().is_err());
        assert!("150%".parse::<Threshold>().is_err());
        assert!("-1".parse::<Threshold>().is_err());
        assert!(Threshold::Count(2).exceeded(3, 0.0));
        assert!(!Threshold::Count(3).exceeded(3, 0.0));
        assert!(Threshold::Rate(0.01).exceeded(0, 0.02));
    }

    #[test]
    fn options_are_consistent() {
        Cli::command().debug_assert();
    }
}
