//! The verdict as text tables for a terminal (or a file: no colours, width from the
//! terminal when there is one).

use super::fmt::{count, kinds, ms, pct, times, verdict_sentences};
use crate::verdict::{Class, Verdict};
use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};
use std::fmt::Write;

/// Longest fingerprint shown in a table cell, in characters.
const FINGERPRINT_CHARS: usize = 70;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(Cell::new));
    t
}

fn right(s: impl ToString) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

/// `s` on one line (runs of whitespace as one space), at most `n` characters.
fn short(s: &str, n: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= n {
        return s;
    }
    format!("{}…", s.chars().take(n - 1).collect::<String>())
}

/// How a class is named in a table: its fingerprint, or its command for other commands.
pub fn label(c: &Class) -> String {
    match (c.command.as_str(), c.fingerprint.as_str()) {
        ("COM_QUERY" | "", f) => f.to_string(),
        (cmd, "") => cmd.to_string(),
        (cmd, f) => format!("{cmd} {f}"),
    }
}

fn compared(v: &Verdict) -> Vec<&str> {
    v.latency
        .iter()
        .filter(|l| l.role == "compared")
        .map(|l| l.target.as_str())
        .collect()
}

fn header(v: &Verdict, o: &mut String) {
    let i = &v.input;
    let _ = writeln!(
        o,
        "mirror-report: {} statements in {} session{} from {} ({} invalid line{})",
        count(i.statements),
        count(v.sessions),
        if v.sessions == 1 { "" } else { "s" },
        i.sources.join(", "),
        count(i.invalid_lines),
        if i.invalid_lines == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        o,
        "main: {}   compared: {}   baseline: {}",
        v.main.as_deref().unwrap_or("-"),
        compared(v).join(", "),
        v.baseline.as_deref().unwrap_or("-")
    );
    let _ = match (&v.time.first, &v.time.last, v.time.basis) {
        (Some(f), Some(l), "message_time") => writeln!(
            o,
            "time: {f} to {l} ({:.0} s, Kafka message times)",
            v.time.seconds.unwrap_or(0.0)
        ),
        (Some(f), Some(l), _) if f != l => writeln!(
            o,
            "time: files last written {f} to {l} (the export has no time per line)"
        ),
        (Some(_), Some(l), _) => writeln!(
            o,
            "time: file last written {l} (the export has no time per line)"
        ),
        _ => writeln!(o, "time: unknown (the export has no time per line)"),
    };
    let (verdict, noise) = verdict_sentences(v);
    let _ = writeln!(o, "\nVERDICT: {verdict}");
    if let Some(n) = noise {
        let _ = writeln!(o, "         {n}");
    }
    if let Some(t) = &v.threshold {
        let _ = writeln!(
            o,
            "         --fail-on-conflicts {}: {}",
            t.limit,
            if t.exceeded {
                "EXCEEDED (exit status 1)"
            } else {
                "not exceeded"
            }
        );
    }
}

fn latency(v: &Verdict, o: &mut String) {
    let mut t = table(&[
        "target",
        "role",
        "statements",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "vs main",
    ]);
    for l in &v.latency {
        let q = l.quantiles;
        t.add_row(vec![
            Cell::new(&l.target),
            Cell::new(l.role),
            right(q.map_or("0".into(), |q| count(q.count))),
            right(q.map_or("-".into(), |q| ms(q.p50))),
            right(q.map_or("-".into(), |q| ms(q.p95))),
            right(q.map_or("-".into(), |q| ms(q.p99))),
            right(q.map_or("-".into(), |q| q.max.to_string())),
            Cell::new(l.ratio_to_main.map_or(String::new(), |r| {
                let known = [("p95", r.p95), ("total", r.total)];
                let parts: Vec<String> = known
                    .iter()
                    .filter_map(|(k, x)| x.map(|x| format!("{k} {}", times(Some(x)))))
                    .collect();
                parts.join(", ")
            })),
        ]);
    }
    let _ = writeln!(o, "\nLatency per target\n{t}");
}

fn conflicts(v: &Verdict, top: usize, o: &mut String) {
    let ranked: Vec<&Class> = v
        .classes
        .iter()
        .filter(|c| c.upgrade_conflicts() > 0)
        .collect();
    if ranked.is_empty() {
        let _ = writeln!(o, "\nNo class differs on the compared server.");
    } else {
        let mut t = table(&[
            "#",
            "class",
            "statements",
            "conflicts",
            "how",
            "hints",
            "fingerprint",
        ]);
        for (n, c) in ranked.iter().take(top).enumerate() {
            t.add_row(vec![
                right(n + 1),
                Cell::new(&c.id[..8]),
                right(count(c.count)),
                right(format!("{} ({})", count(c.conflicts), pct(c.conflict_rate))),
                Cell::new(kinds(c)),
                Cell::new(c.hints.join(", ")),
                Cell::new(short(&label(c), FINGERPRINT_CHARS)),
            ]);
        }
        let more = ranked.len().saturating_sub(top);
        let _ = writeln!(
            o,
            "\nClasses by conflicts{}\n{t}",
            if more > 0 {
                format!(" (first {top}; {more} more in --json)")
            } else {
                String::new()
            }
        );
    }
    let noisy: Vec<&Class> = v.classes.iter().filter(|c| c.non_deterministic).collect();
    if !noisy.is_empty() {
        let mut t = table(&[
            "class",
            "statements",
            "main vs baseline",
            "conflicts set apart",
            "fingerprint",
        ]);
        for c in noisy.iter().take(top) {
            t.add_row(vec![
                Cell::new(&c.id[..8]),
                right(count(c.count)),
                right(count(c.baseline_differences)),
                right(count(c.conflicts)),
                Cell::new(short(&label(c), FINGERPRINT_CHARS)),
            ]);
        }
        let _ = writeln!(o, "\nNon-deterministic classes (main and baseline differ too; not upgrade differences)\n{t}");
    }
}

fn slowdown(v: &Verdict, top: usize, o: &mut String) {
    if v.rank_by_slowdown.is_empty() {
        return;
    }
    let mut t = table(&[
        "#",
        "class",
        "statements",
        "target",
        "main p95",
        "target p95",
        "p95 ×",
        "total ×",
        "extra time",
        "fingerprint",
    ]);
    for (n, id) in v.rank_by_slowdown.iter().take(top).enumerate() {
        let Some(c) = v.class(id) else { continue };
        let Some((tg, extra)) = c.slowdown() else {
            continue;
        };
        let main = c
            .targets
            .iter()
            .find(|t| t.role == "main")
            .and_then(|t| t.latency);
        let r = tg.ratio_to_main;
        t.add_row(vec![
            right(n + 1),
            Cell::new(&c.id[..8]),
            right(count(c.count)),
            Cell::new(&tg.target),
            right(main.map_or("-".into(), |q| ms(q.p95))),
            right(tg.latency.map_or("-".into(), |q| ms(q.p95))),
            right(times(r.and_then(|r| r.p95))),
            right(times(r.and_then(|r| r.total))),
            right(format!("{} ms", count(extra as u64))),
            Cell::new(short(&label(c), FINGERPRINT_CHARS)),
        ]);
    }
    let _ = writeln!(
        o,
        "\nClasses by slow-down (time a compared target spent beyond main's)\n{t}"
    );
}

fn samples(v: &Verdict, top: usize, o: &mut String) {
    let with: Vec<&Class> = v
        .classes
        .iter()
        .filter(|c| !c.samples.is_empty())
        .take(top)
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nSamples (one per class and kind of difference)");
    for c in with {
        for s in &c.samples {
            let _ = writeln!(
                o,
                "  [{}] {} (session {}, query_id {}): {}",
                &c.id[..8],
                s.kinds.join(", "),
                s.session,
                s.query_id,
                short(&s.query, 200)
            );
            for b in [&s.main, &s.other] {
                let _ = writeln!(
                    o,
                    "      {:<12} {} {} rows, {} warnings, {} ms, checksum {}",
                    b.target, b.kind, b.rows, b.warnings, b.duration, b.checksum
                );
            }
            if let Some(d) = &s.report_diff {
                let _ = writeln!(o, "      report_diff  {}", short(&d.to_string(), 300));
            }
        }
    }
}

fn trailer(v: &Verdict, o: &mut String) {
    if v.input.invalid_lines > 0 {
        let _ = writeln!(
            o,
            "\nInvalid lines: {} (first {} shown)",
            count(v.input.invalid_lines),
            v.input.invalid_examples.len()
        );
        for e in &v.input.invalid_examples {
            let _ = writeln!(
                o,
                "  {}:{}: {}: {}",
                e.source,
                e.line,
                e.error,
                short(&e.text, 100)
            );
        }
    }
    if v.input.utf8_replaced > 0 {
        let n = v.input.utf8_replaced;
        let _ = writeln!(
            o,
            "\n{} {} not valid UTF-8, read with U+FFFD in place of the bad bytes.",
            count(n),
            if n == 1 { "line was" } else { "lines were" }
        );
    }
    if !v.notes.is_empty() {
        let _ = writeln!(o, "\nNotes:");
        for n in &v.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
}

pub fn render(v: &Verdict, top: usize) -> String {
    let mut o = String::new();
    header(v, &mut o);
    latency(v, &mut o);
    conflicts(v, top, &mut o);
    slowdown(v, top, &mut o);
    samples(v, top, &mut o);
    trailer(v, &mut o);
    o
}
