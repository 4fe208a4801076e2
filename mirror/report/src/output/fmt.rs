//! Number formats shared by the terminal and HTML outputs.

use crate::analysis::compare::DiffKind;
use crate::verdict::{Class, Verdict};

/// 1234567 → "1,234,567".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate (0..1) as a percentage with enough digits to tell small rates from zero.
pub fn pct(r: f64) -> String {
    let p = r * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 0.1 {
        format!("{p:.1} %")
    } else {
        format!("{p:.3} %")
    }
}

pub fn ms(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn times(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("×{r:.2}"))
}

/// The verdict in a sentence, and the baseline's part when there is one.
pub fn verdict_sentences(v: &Verdict) -> (String, Option<String>) {
    let c = &v.conflicts;
    let main = format!(
        "{} of {} classes differ on the compared server: {} of {} compared statements conflict ({})",
        c.classes_with_upgrade_conflicts,
        v.classes.len(),
        count(c.upgrade),
        count(c.compared),
        pct(c.rate)
    );
    let noise = v.baseline.as_ref().map(|_| {
        format!(
            "{} more statements in {} non-deterministic classes (the baseline differs from main too) are set apart",
            count(c.non_deterministic),
            c.non_deterministic_classes
        )
    });
    (main, noise)
}

/// The kinds of a class's conflicts over its compared targets: "data 20, rows 3".
pub fn kinds(c: &Class) -> String {
    let mut parts = Vec::new();
    for k in DiffKind::CONFLICT_KINDS {
        let n: u64 = c
            .targets
            .iter()
            .filter(|t| t.role == "compared")
            .filter_map(|t| t.kinds.get(k.name()))
            .sum();
        if n > 0 {
            parts.push(format!("{} {}", k.name(), count(n)));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(pct(0.0), "0 %");
        assert_eq!(pct(0.5), "50 %");
        assert_eq!(pct(0.0123), "1.2 %");
        assert_eq!(pct(0.00001), "0.001 %");
        assert_eq!(ms(3.0), "3");
        assert_eq!(ms(3.25), "3.2");
        assert_eq!(times(Some(1.5)), "×1.50");
        assert_eq!(times(None), "-");
    }
}
