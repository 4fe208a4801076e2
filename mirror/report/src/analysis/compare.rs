//! How a target's answer differs from main's. A conflict is a checksum that differs; the
//! other fields of the report say how. One conflict can be several kinds at once (rows and
//! warnings); `data` is a conflict that none of the others explains: same type, rows and
//! warnings, so the bytes (values, column definitions, OK-packet fields) differ.

use crate::doc::{Answer, Kind};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DiffKind {
    ErrorOneSide,
    ErrorDiffers,
    Type,
    Rows,
    Warnings,
    Data,
    /// Main and the baseline (same version as main) differ: noise, not an upgrade effect.
    Baseline,
}

impl DiffKind {
    /// The kinds a comparison with main can yield, in the order the report lists them.
    pub const CONFLICT_KINDS: [DiffKind; 6] = [
        DiffKind::ErrorOneSide,
        DiffKind::ErrorDiffers,
        DiffKind::Type,
        DiffKind::Rows,
        DiffKind::Warnings,
        DiffKind::Data,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DiffKind::ErrorOneSide => "error_one_side",
            DiffKind::ErrorDiffers => "error_differs",
            DiffKind::Type => "type",
            DiffKind::Rows => "rows",
            DiffKind::Warnings => "warnings",
            DiffKind::Data => "data",
            DiffKind::Baseline => "baseline",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of difference kinds; empty when the checksums agree.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Diffs(u8);

impl Diffs {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, k: DiffKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = DiffKind> {
        DiffKind::CONFLICT_KINDS
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    fn add(&mut self, k: DiffKind) {
        self.0 |= k.bit();
    }
}

pub fn compare(main: &Answer<'_>, other: &Answer<'_>) -> Diffs {
    let mut d = Diffs::default();
    if main.checksum == other.checksum {
        return d;
    }
    let (e1, e2) = (main.kind == Kind::Error, other.kind == Kind::Error);
    if e1 != e2 {
        d.add(DiffKind::ErrorOneSide);
    } else if e1 {
        d.add(DiffKind::ErrorDiffers);
    } else if main.kind != other.kind {
        d.add(DiffKind::Type);
    }
    if main.rows != other.rows {
        d.add(DiffKind::Rows);
    }
    if main.warnings != other.warnings {
        d.add(DiffKind::Warnings);
    }
    if d.is_empty() {
        d.add(DiffKind::Data);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(checksum: &str, rows: u64, warnings: u64, kind: Kind) -> Answer<'_> {
        Answer {
            checksum,
            rows,
            warnings,
            duration: 0,
            kind,
        }
    }

    fn kinds(d: Diffs) -> Vec<&'static str> {
        d.iter().map(DiffKind::name).collect()
    }

    #[test]
    fn kinds_of_difference() {
        let main = a("1", 3, 0, Kind::Resultset);
        assert!(compare(&main, &a("1", 3, 0, Kind::Resultset)).is_empty());
        assert!(
            compare(&main, &a("1", 4, 1, Kind::Ok)).is_empty(),
            "only the checksum decides a conflict"
        );
        assert_eq!(
            kinds(compare(&main, &a("2", 3, 0, Kind::Resultset))),
            ["data"]
        );
        assert_eq!(
            kinds(compare(&main, &a("2", 2, 0, Kind::Resultset))),
            ["rows"]
        );
        assert_eq!(
            kinds(compare(&main, &a("2", 3, 2, Kind::Resultset))),
            ["warnings"]
        );
        assert_eq!(
            kinds(compare(&main, &a("2", 0, 0, Kind::Error))),
            ["error_one_side", "rows"]
        );
        assert_eq!(
            kinds(compare(
                &a("1", 0, 0, Kind::Error),
                &a("2", 0, 0, Kind::Error)
            )),
            ["error_differs"]
        );
        assert_eq!(
            kinds(compare(
                &a("1", 0, 0, Kind::Ok),
                &a("2", 0, 0, Kind::Resultset)
            )),
            ["type"]
        );
    }
}
