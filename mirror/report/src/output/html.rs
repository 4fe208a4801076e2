//! The verdict as one self-contained HTML page: CSS, script and charts are inline, nothing
//! is fetched. The class table sorts by any column (a click on its header).

use super::charts;
use super::fmt::{count, kinds, ms, pct, times, verdict_sentences};
use super::terminal::label;
use crate::verdict::{Class, Verdict};
use std::fmt::Write;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A number cell: sorted by `v`, shown as `text`.
fn num(v: f64, text: &str) -> String {
    format!("<td class=\"n\" data-v=\"{v}\">{}</td>", escape(text))
}

fn summary(v: &Verdict, o: &mut String) {
    let i = &v.input;
    let c = &v.conflicts;
    let time = match (&v.time.first, &v.time.last, v.time.basis) {
        (Some(f), Some(l), "message_time") => format!("{f} – {l}"),
        (Some(_), Some(l), "file_mtime") => {
            format!("files last written up to {l} (no time per line)")
        }
        _ => "unknown (no time per line)".into(),
    };
    let cards = [
        ("statements", count(i.statements)),
        ("sessions", count(v.sessions)),
        ("classes", count(v.classes.len() as u64)),
        ("conflict rate", pct(c.rate)),
        ("upgrade conflicts", count(c.upgrade)),
        ("invalid lines", count(i.invalid_lines)),
    ];
    let _ = write!(o, "<section id=\"summary\"><dl class=\"cards\">");
    for (k, val) in cards {
        let _ = write!(o, "<div><dt>{k}</dt><dd>{}</dd></div>", escape(&val));
    }
    let _ = write!(o, "</dl>");
    let bad = c.upgrade > 0 || v.threshold.as_ref().is_some_and(|t| t.exceeded);
    let (verdict, noise) = verdict_sentences(v);
    let _ = write!(
        o,
        "<p class=\"verdict{}\">{}.",
        if bad { " bad" } else { "" },
        escape(&verdict)
    );
    if let Some(n) = noise {
        let _ = write!(o, " {}.", escape(&n));
    }
    if let Some(t) = &v.threshold {
        let _ = write!(
            o,
            " Threshold {}: {}.",
            escape(&t.limit),
            if t.exceeded {
                "exceeded"
            } else {
                "not exceeded"
            }
        );
    }
    let _ = write!(
        o,
        "</p><p class=\"sub\">main <b>{}</b> · compared {} · baseline {} · time: {} · input: {}</p>",
        escape(v.main.as_deref().unwrap_or("-")),
        escape(&v.latency.iter().filter(|l| l.role == "compared").map(|l| l.target.as_str()).collect::<Vec<_>>().join(", ")),
        escape(v.baseline.as_deref().unwrap_or("-")),
        escape(&time),
        escape(&i.sources.join(", "))
    );
    if !v.notes.is_empty() {
        let _ = write!(o, "<ul class=\"notes\">");
        for n in &v.notes {
            let _ = write!(o, "<li>{}</li>", escape(n));
        }
        let _ = write!(o, "</ul>");
    }
    let _ = write!(o, "</section>");
}

fn latency(v: &Verdict, o: &mut String) -> Result<(), String> {
    let _ = write!(o, "<section><h2>Latency per target</h2><table id=\"latency\"><thead><tr><th>target</th><th>role</th><th>statements</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>p95 vs main</th><th>total vs main</th></tr></thead><tbody>");
    for l in &v.latency {
        let _ = write!(o, "<tr><td>{}</td><td>{}</td>", escape(&l.target), l.role);
        match l.quantiles {
            Some(q) => {
                let _ = write!(
                    o,
                    "{}{}{}{}{}",
                    num(q.count as f64, &count(q.count)),
                    num(q.p50, &ms(q.p50)),
                    num(q.p95, &ms(q.p95)),
                    num(q.p99, &ms(q.p99)),
                    num(q.max as f64, &q.max.to_string())
                );
            }
            None => o.push_str("<td class=\"n\">0</td><td></td><td></td><td></td><td></td>"),
        }
        let r = l.ratio_to_main;
        let _ = write!(
            o,
            "{}{}</tr>",
            num(0.0, &r.map_or(String::new(), |r| times(r.p95))),
            num(0.0, &r.map_or(String::new(), |r| times(r.total)))
        );
    }
    let _ = write!(
        o,
        "</tbody></table><div class=\"charts\"><figure id=\"latency-chart\">{}<figcaption>Latency distribution per target</figcaption></figure><figure id=\"timeline-chart\">{}<figcaption>Conflicts over the input</figcaption></figure></div></section>",
        strip_xml_declaration(&charts::latency_cdf(v)?),
        strip_xml_declaration(&charts::conflicts_over_input(v)?)
    );
    Ok(())
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

fn class_row(c: &Class, compared: &[&str], o: &mut String) {
    let class = if c.non_deterministic {
        "noise"
    } else if c.upgrade_conflicts() > 0 {
        "conflict"
    } else {
        ""
    };
    let _ = write!(
        o,
        "<tr class=\"{class}\" data-class=\"{}\"><td><code>{}</code></td><td><code>{}</code></td>{}{}{}<td>{}</td><td>{}</td><td>{}</td>",
        c.id,
        &c.id[..8],
        escape(&label(c)),
        num(c.count as f64, &count(c.count)),
        num(c.conflicts as f64, &count(c.conflicts)),
        num(c.conflict_rate, &pct(c.conflict_rate)),
        escape(&kinds(c)),
        if c.non_deterministic { "yes" } else { "" },
        escape(&c.hints.join(", "))
    );
    let main = c
        .targets
        .iter()
        .find(|t| t.role == "main")
        .and_then(|t| t.latency);
    o.push_str(&main.map_or("<td></td>".into(), |q| num(q.p95, &ms(q.p95))));
    for name in compared {
        match c.targets.iter().find(|t| t.target == *name) {
            Some(t) => {
                let p95 = t.latency.map_or(0.0, |q| q.p95);
                let r = t.ratio_to_main.and_then(|r| r.p95);
                let _ = write!(
                    o,
                    "{}{}{}",
                    num(p95, &ms(p95)),
                    num(r.unwrap_or(0.0), &times(r)),
                    num(t.extra_ms as f64, &count(t.extra_ms.max(0) as u64))
                );
            }
            None => o.push_str("<td></td><td></td><td></td>"),
        }
    }
    o.push_str("</tr>");
}

fn classes(v: &Verdict, o: &mut String) {
    let compared: Vec<&str> = v
        .latency
        .iter()
        .filter(|l| l.role == "compared")
        .map(|l| l.target.as_str())
        .collect();
    let _ = write!(
        o,
        "<section><h2>Classes</h2><p class=\"sub\">Click a column to sort. Red: differs on the compared server; grey: non-deterministic (the baseline differs too).</p><table id=\"classes\" class=\"sortable\"><thead><tr><th>id</th><th>class</th><th data-type=\"number\">statements</th><th data-type=\"number\">conflicts</th><th data-type=\"number\">rate</th><th>how</th><th>non-deterministic</th><th>hints</th><th data-type=\"number\">main p95 ms</th>"
    );
    for t in &compared {
        let t = escape(t);
        let _ = write!(o, "<th data-type=\"number\">{t} p95 ms</th><th data-type=\"number\">{t} p95 ×</th><th data-type=\"number\">{t} extra ms</th>");
    }
    o.push_str("</tr></thead><tbody>");
    for c in &v.classes {
        class_row(c, &compared, o);
    }
    o.push_str("</tbody></table></section>");
}

fn samples(v: &Verdict, o: &mut String) {
    let with: Vec<&Class> = v.classes.iter().filter(|c| !c.samples.is_empty()).collect();
    if with.is_empty() {
        return;
    }
    o.push_str("<section id=\"samples\"><h2>Samples</h2>");
    for c in with {
        let _ = write!(
            o,
            "<details open><summary><code>{}</code> {}</summary>",
            &c.id[..8],
            escape(&label(c))
        );
        for s in &c.samples {
            let _ = write!(o, "<p><b>{}</b> · session {} · query_id {}</p><pre>{}</pre><table><tr><th>target</th><th>type</th><th>rows</th><th>warnings</th><th>ms</th><th>checksum</th></tr>", s.kinds.join(", "), s.session, s.query_id, escape(&s.query));
            for b in [&s.main, &s.other] {
                let _ = write!(o, "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>", escape(&b.target), b.kind, b.rows, b.warnings, b.duration, escape(&b.checksum));
            }
            o.push_str("</table>");
            if let Some(d) = &s.report_diff {
                let pretty = serde_json::to_string_pretty(d).unwrap_or_default();
                let _ = write!(o, "<p>report_diff</p><pre>{}</pre>", escape(&pretty));
            }
        }
        o.push_str("</details>");
    }
    o.push_str("</section>");
}

fn invalid(v: &Verdict, o: &mut String) {
    if v.input.invalid_lines == 0 {
        return;
    }
    let _ = write!(o, "<section id=\"invalid\"><h2>Invalid lines: {} (first {} shown)</h2><table><tr><th>source</th><th>line</th><th>error</th><th>text</th></tr>", count(v.input.invalid_lines), v.input.invalid_examples.len());
    for e in &v.input.invalid_examples {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&e.source),
            e.line,
            escape(&e.error),
            escape(&e.text)
        );
    }
    o.push_str("</table></section>");
}

pub fn render(v: &Verdict) -> Result<String, String> {
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(o, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>mirror-report</title><style>{CSS}</style></head><body><h1>Mirror report</h1>");
    summary(v, &mut o);
    latency(v, &mut o)?;
    classes(v, &mut o);
    samples(v, &mut o);
    invalid(v, &mut o);
    let _ = writeln!(o, "<script>{JS}</script></body></html>");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
