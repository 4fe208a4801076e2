//! mirror-report: reads the mirror router's export and prints an upgrade verdict.

mod analysis;
mod cli;
mod doc;
mod fingerprint;
mod hints;
mod input;
mod latency;
mod output;
mod progress;
mod verdict;

use analysis::{Analyzer, Options, Origin};
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn run(cli: cli::Cli) -> Result<ExitCode, String> {
    let mut analyzer = Analyzer::new(Options {
        main: cli.main.clone(),
        baseline: cli.baseline.clone(),
        max_classes: cli.max_classes as usize,
    });
    let mut feed = |line: &[u8], origin: &Origin<'_>| analyzer.feed(line, origin);
    let read = match (&cli.kafka, &cli.topic) {
        (Some(broker), Some(topic)) => {
            let k = input::kafka::KafkaInput {
                broker: broker.clone(),
                topic: topic.clone(),
                group: cli.group.clone(),
                timeout: Duration::from_secs(cli.kafka_timeout.max(1)),
            };
            input::kafka::read(&k, cli.quiet, &mut feed)?
        }
        _ => input::files::read(&cli.files, cli.quiet, &mut feed)?,
    };
    let run = verdict::RunInfo {
        sources: read.sources,
        mtimes_ms: read.mtimes_ms,
        threshold: cli.fail_on_conflicts,
    };
    let mut v = verdict::build(&analyzer, run);
    v.notes.extend(read.notes);
    if let Some(path) = &cli.html {
        let page = output::html::render(&v)?;
        std::fs::write(path, page)
            .map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
    }
    let text = if cli.json {
        let mut s = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
        s.push('\n');
        s
    } else {
        output::terminal::render(&v, cli.top)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (| head) is not an error worth a message.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(if v.threshold.is_some_and(|t| t.exceeded) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mirror-report: {e}");
            ExitCode::from(2)
        }
    }
}
