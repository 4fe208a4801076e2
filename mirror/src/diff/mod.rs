//! `report_diff`: where a target's reply first differs from main's, found while the replies
//! stream, without copying them.
//!
//! Packets are compared one by one by a 56-bit hash. Whichever reply is ahead keeps the hashes
//! of its packets the other has not reached yet (at most MAX_AHEAD), plus the values of the
//! first of them within VALUE_BUDGET bytes (each cut at 1 KiB), so that both sides of the
//! first difference can be shown; a value that did not fit is shown as "not kept". Packets
//! both replies have are dropped at once.

mod describe;

use describe::describe;
pub use describe::{column_type, ColumnType, Kind};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// Packets one reply may be ahead of the other; past that this target is not compared.
pub const MAX_AHEAD: usize = 100_000;
/// Bytes of packet values one reply keeps for packets the other has not reached yet.
pub const VALUE_BUDGET: usize = 256 << 10;

/// Position of a packet in its reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub packet: u64,
    pub result: u64,
    pub column: u64,
    pub row: u64,
}

/// A reply as it streams: what its packets are and where.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    pos: Pos,
    results: u64,
    cols: Vec<ColumnType>,
    /// The columns a COM_STMT_PREPARE announced: those of a binary result that comes
    /// without column definitions (metadata caching).
    prepared: Vec<ColumnType>,
    prev_max: bool,
}

impl Stream {
    /// Classifies the next packet (its kind from the reply tracker's view); returns its
    /// position.
    pub fn next(&mut self, kind: Kind, payload: &[u8]) -> (Kind, Pos) {
        let kind = if self.prev_max {
            Kind::Continuation
        } else {
            kind
        };
        self.prev_max = payload.len() == bridge::protocol::packet::MAX_PAYLOAD;
        let here = self.pos;
        match kind {
            Kind::Header => {
                self.pos.result = self.results;
                self.results += 1;
                self.pos.column = 0;
                self.pos.row = 0;
                self.cols.clear();
            }
            Kind::Row if self.cols.is_empty() => {
                self.cols = self.prepared.clone();
                self.pos.row += 1;
            }
            Kind::ColumnDef => {
                if self.cols.len() < 4096 {
                    self.cols.push(column_type(payload));
                }
                self.pos.column += 1;
            }
            Kind::Row => self.pos.row += 1,
            _ => {}
        }
        self.pos.packet += 1;
        let here = if kind == Kind::Header {
            Pos {
                packet: here.packet,
                ..self.pos
            }
        } else {
            here
        };
        (kind, here)
    }
}

struct Unit {
    /// Hash in the low 56 bits, kind in the top 8.
    key: u64,
    value: Option<Box<[u8]>>,
}

impl Unit {
    fn kind(&self) -> Kind {
        Kind::from_u8((self.key >> 56) as u8)
    }
}

fn key(kind: Kind, packet: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    packet.hash(&mut h);
    (h.finish() & ((1 << 56) - 1)) | (kind as u64) << 56
}

/// Packets kept for the reply that is ahead: a key (8 bytes) each, and the values of some.
#[derive(Default)]
struct Ahead {
    /// Number of the packet `keys[0]` is for.
    base: u64,
    keys: VecDeque<u64>,
    /// (packet number, value cut at VALUE_LIMIT), in order.
    values: VecDeque<(u64, Box<[u8]>)>,
    value_bytes: usize,
}

impl Ahead {
    fn push(&mut self, kind: Kind, packet: &[u8], payload: &[u8]) -> bool {
        if self.keys.len() >= MAX_AHEAD {
            return false;
        }
        let cut = &payload[..payload.len().min(describe::VALUE_LIMIT)];
        if self.value_bytes + cut.len() <= VALUE_BUDGET {
            self.value_bytes += cut.len();
            self.values
                .push_back((self.base + self.keys.len() as u64, cut.into()));
        }
        self.keys.push_back(key(kind, packet));
        true
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn key_at(&self, idx: usize) -> Option<u64> {
        self.keys.get(idx).copied()
    }

    fn unit_at(&self, idx: usize) -> Option<Unit> {
        let key = self.key_at(idx)?;
        let n = self.base + idx as u64;
        let value = self
            .values
            .binary_search_by_key(&n, |v| v.0)
            .ok()
            .map(|i| self.values[i].1.clone());
        Some(Unit { key, value })
    }

    fn pop(&mut self) -> Option<Unit> {
        let key = self.keys.pop_front()?;
        let value = match self.values.front() {
            Some((n, _)) if *n == self.base => self.values.pop_front().map(|v| v.1),
            _ => None,
        };
        self.value_bytes -= value.as_ref().map_or(0, |v| v.len());
        self.base += 1;
        Some(Unit { key, value })
    }
}

struct TargetCmp {
    stream: Stream,
    /// Packets known to be equal in both replies.
    matched: u64,
    /// This target's packets main has not reached.
    ahead: Ahead,
    found: Option<Value>,
    /// Too far apart to compare.
    gave_up: bool,
}

impl TargetCmp {
    fn active(&self) -> bool {
        self.found.is_none() && !self.gave_up
    }
}

/// The comparison of one request's replies.
pub struct Comparison {
    main: usize,
    binary: bool,
    main_stream: Stream,
    main_count: u64,
    /// Main's packets from `main_base` on that some target has not reached.
    main_ahead: Ahead,
    main_base: u64,
    targets: Vec<Option<TargetCmp>>,
}

fn side(u: Option<(&Unit, Option<&[u8]>)>, binary: bool, cols: &[ColumnType]) -> Value {
    match u {
        None => Value::Null,
        Some((u, live)) => match live.or(u.value.as_deref()) {
            Some(p) => describe(u.kind(), p, binary, cols),
            None => json!("not kept"),
        },
    }
}

impl Comparison {
    /// `binary`: rows come in the binary protocol (COM_STMT_EXECUTE, COM_STMT_FETCH), with
    /// `prepared` the statement's columns as its prepare announced them.
    pub fn new(n_targets: usize, main: usize, binary: bool, prepared: Vec<ColumnType>) -> Self {
        let stream = Stream {
            prepared,
            ..Stream::default()
        };
        let targets = (0..n_targets)
            .map(|i| {
                (i != main).then(|| TargetCmp {
                    stream: stream.clone(),
                    matched: 0,
                    ahead: Ahead::default(),
                    found: None,
                    gave_up: false,
                })
            })
            .collect();
        Comparison {
            main,
            binary,
            main_stream: stream,
            main_count: 0,
            main_ahead: Ahead::default(),
            main_base: 0,
            targets,
        }
    }

    fn found(
        &self,
        pos: Pos,
        m: Option<(&Unit, Option<&[u8]>)>,
        t: Option<(&Unit, Option<&[u8]>)>,
        cols: &[ColumnType],
    ) -> Value {
        let kind = m.or(t).map_or(Kind::Other, |(u, _)| u.kind());
        let mut o = Map::new();
        o.insert("at".into(), json!(kind.name()));
        o.insert("packet".into(), json!(pos.packet));
        match kind {
            Kind::Header | Kind::ColumnDef | Kind::Row | Kind::Eof => {
                o.insert("result".into(), json!(pos.result));
            }
            _ => {}
        }
        match kind {
            Kind::ColumnDef => {
                o.insert("column".into(), json!(pos.column));
            }
            Kind::Row => {
                o.insert("row".into(), json!(pos.row));
            }
            _ => {}
        }
        o.insert("main".into(), side(m, self.binary, cols));
        o.insert("target".into(), side(t, self.binary, cols));
        Value::Object(o)
    }

    /// A packet of target `i`'s reply (header included in `packet`); `kind` as the reply
    /// tracker saw it.
    pub fn feed(&mut self, i: usize, kind: Kind, packet: &[u8]) {
        let payload = &packet[4..];
        if i == self.main {
            self.feed_main(kind, packet, payload);
            return;
        }
        let main_count = self.main_count;
        let main_base = self.main_base;
        let Some(Some(t)) = self.targets.get_mut(i) else {
            return;
        };
        if !t.active() {
            return;
        }
        let (kind, pos) = t.stream.next(kind, payload);
        if t.matched < main_count {
            let idx = (t.matched - main_base) as usize;
            let mine = Unit {
                key: key(kind, packet),
                value: None,
            };
            if self.main_ahead.key_at(idx) == Some(mine.key) {
                t.matched += 1;
                self.collect();
            } else {
                let cols = t.stream.cols.clone();
                let theirs = self.main_ahead.unit_at(idx).expect("main's packet kept");
                let v = self.found(
                    pos,
                    Some((&theirs, None)),
                    Some((&mine, Some(payload))),
                    &cols,
                );
                self.targets[i].as_mut().unwrap().found = Some(v);
                self.collect();
            }
        } else if !t.ahead.push(kind, packet, payload) {
            t.gave_up = true;
        }
    }

    fn feed_main(&mut self, kind: Kind, packet: &[u8], payload: &[u8]) {
        let (kind, pos) = self.main_stream.next(kind, payload);
        let mine = Unit {
            key: key(kind, packet),
            value: None,
        };
        let mut keep = false;
        for i in 0..self.targets.len() {
            let Some(t) = self.targets[i].as_mut() else {
                continue;
            };
            if !t.active() {
                continue;
            }
            match t.ahead.pop() {
                Some(theirs) if theirs.key == mine.key => t.matched += 1,
                Some(theirs) => {
                    let cols = self.main_stream.cols.clone();
                    let v = self.found(
                        pos,
                        Some((&mine, Some(payload))),
                        Some((&theirs, None)),
                        &cols,
                    );
                    self.targets[i].as_mut().unwrap().found = Some(v);
                }
                None => keep = true,
            }
        }
        self.main_count += 1;
        if keep {
            if !self.main_ahead.push(kind, packet, payload) {
                for t in self.targets.iter_mut().flatten() {
                    if t.active() && t.matched == self.main_base {
                        t.gave_up = true;
                    }
                }
                self.collect();
                let _ = self.main_ahead.push(kind, packet, payload);
            }
        } else {
            // Nobody needs it; keep the numbering.
            self.collect();
            if self.main_ahead.len() == 0 {
                self.main_base = self.main_count;
                self.main_ahead.base = self.main_count;
            }
        }
    }

    /// Drops main's packets every compared target has passed.
    fn collect(&mut self) {
        let low = self
            .targets
            .iter()
            .flatten()
            .filter(|t| t.active())
            .map(|t| t.matched)
            .min()
            .unwrap_or(self.main_count);
        while self.main_base < low && self.main_ahead.pop().is_some() {
            self.main_base += 1;
        }
        if self.main_ahead.len() == 0 {
            self.main_base = low.max(self.main_base);
            self.main_ahead.base = self.main_base;
        }
    }

    /// Where target `i`'s complete reply first differs from main's complete reply, if it
    /// does.
    pub fn result(&self, i: usize) -> Option<Value> {
        let t = self.targets.get(i)?.as_ref()?;
        if let Some(v) = &t.found {
            return Some(v.clone());
        }
        if t.gave_up {
            return Some(
                json!({"at": "unknown", "packet": t.matched, "why": format!("replies more than {MAX_AHEAD} packets apart")}),
            );
        }
        // Equal up to the end of the shorter reply: the longer one has more.
        if self.main_count > t.matched {
            let u = self
                .main_ahead
                .unit_at((t.matched - self.main_base) as usize)?;
            return Some(self.found(t.stream.pos, Some((&u, None)), None, &t.stream.cols));
        }
        let u = t.ahead.unit_at(0)?;
        Some(self.found(
            self.main_stream.pos,
            None,
            Some((&u, None)),
            &self.main_stream.cols,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::packet::{write_lenenc_str, write_packet};

    fn pk(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        write_packet(&mut b, seq, payload);
        b
    }
    fn row(vals: &[&str]) -> Vec<u8> {
        let mut p = Vec::new();
        for v in vals {
            write_lenenc_str(&mut p, v.as_bytes());
        }
        p
    }
    /// A text result with one column and these rows, as (kind, packet).
    fn result(rows: &[&str]) -> Vec<(Kind, Vec<u8>)> {
        let mut coldef = Vec::new();
        for s in ["def", "d", "t", "t", "v", "v"] {
            write_lenenc_str(&mut coldef, s.as_bytes());
        }
        coldef.extend_from_slice(&[0x0C, 45, 0, 10, 0, 0, 0, 253, 0, 0, 0, 0, 0]);
        let mut out = vec![
            (Kind::Header, pk(1, &[1])),
            (Kind::ColumnDef, pk(2, &coldef)),
            (Kind::Eof, pk(3, &[0xFE, 0, 0, 2, 0])),
        ];
        for (i, r) in rows.iter().enumerate() {
            out.push((Kind::Row, pk((4 + i) as u8, &row(&[r]))));
        }
        out.push((Kind::Eof, pk((4 + rows.len()) as u8, &[0xFE, 0, 0, 2, 0])));
        out
    }

    fn run(main: &[(Kind, Vec<u8>)], other: &[(Kind, Vec<u8>)], interleave: bool) -> Option<Value> {
        let mut c = Comparison::new(2, 0, false, vec![]);
        if interleave {
            for k in 0..main.len().max(other.len()) {
                if let Some((kind, p)) = other.get(k) {
                    c.feed(1, *kind, p);
                }
                if let Some((kind, p)) = main.get(k) {
                    c.feed(0, *kind, p);
                }
            }
        } else {
            for (kind, p) in main {
                c.feed(0, *kind, p);
            }
            for (kind, p) in other {
                c.feed(1, *kind, p);
            }
        }
        c.result(1)
    }

    #[test]
    fn equal_replies_have_no_diff() {
        let r = result(&["a", "b", "c"]);
        assert_eq!(run(&r, &r, false), None);
        assert_eq!(run(&r, &r, true), None);
    }

    #[test]
    fn names_the_first_differing_row_in_either_order() {
        let m = result(&["a", "b", "c"]);
        let t = result(&["a", "x", "c"]);
        for interleave in [false, true] {
            let d = run(&m, &t, interleave).unwrap();
            assert_eq!(
                d,
                json!({"at": "row", "packet": 4, "result": 0, "row": 1, "main": ["b"], "target": ["x"]}),
                "{interleave}"
            );
        }
        // Target first: main's side is the live one.
        let mut c = Comparison::new(2, 0, false, vec![]);
        for (k, p) in &t {
            c.feed(1, *k, p);
        }
        for (k, p) in &m {
            c.feed(0, *k, p);
        }
        assert_eq!(c.result(1).unwrap()["target"], json!(["x"]));
    }

    #[test]
    fn a_missing_row_and_a_column_difference() {
        let d = run(&result(&["a", "b"]), &result(&["a"]), false).unwrap();
        assert_eq!(
            (d["at"].as_str(), d["row"].as_u64()),
            (Some("row"), Some(1))
        );
        assert_eq!(
            (d["main"].clone(), d["target"]["status"].as_u64()),
            (json!(["b"]), Some(2))
        );
        let mut t = result(&["a"]);
        let mut coldef = Vec::new();
        for s in ["def", "d", "t", "t", "w", "w"] {
            write_lenenc_str(&mut coldef, s.as_bytes());
        }
        coldef.extend_from_slice(&[0x0C, 45, 0, 10, 0, 0, 0, 3, 0, 0, 0, 0, 0]);
        t[1].1 = pk(2, &coldef);
        let d = run(&result(&["a"]), &t, true).unwrap();
        assert_eq!(
            (d["at"].as_str(), d["column"].as_u64()),
            (Some("column"), Some(0))
        );
        assert_eq!(
            (
                d["main"]["name"].as_str(),
                d["target"]["name"].as_str(),
                d["target"]["type"].as_str()
            ),
            (Some("v"), Some("w"), Some("LONG"))
        );
    }

    #[test]
    fn values_beyond_the_budget_are_not_kept_and_memory_stays_bounded() {
        let big = "z".repeat(1000);
        let mut rows: Vec<String> = (0..2000).map(|i| format!("{i}{big}")).collect();
        let m: Vec<&str> = rows.iter().map(String::as_str).collect();
        let m = result(&m);
        rows[1500] = "different".into();
        let t: Vec<&str> = rows.iter().map(String::as_str).collect();
        let d = run(&m, &result(&t), false).unwrap();
        assert_eq!(
            (d["row"].as_u64(), d["main"].as_str()),
            (Some(1500), Some("not kept"))
        );
        assert_eq!(d["target"], json!(["different"]));
        let mut c = Comparison::new(2, 0, false, vec![]);
        for (k, p) in &m {
            c.feed(0, *k, p);
        }
        assert!(c.main_ahead.value_bytes <= VALUE_BUDGET);
    }

    #[test]
    fn errors_differ() {
        let mut e1 = vec![0xFF, 0x7A, 0x04, b'#'];
        e1.extend_from_slice(b"42S02Table 'a' doesn't exist");
        let mut e2 = vec![0xFF, 0x1E, 0x04, b'#'];
        e2.extend_from_slice(b"42S22Unknown column 'x'");
        let d = run(
            &[(Kind::Err, pk(1, &e1))],
            &[(Kind::Err, pk(1, &e2))],
            false,
        )
        .unwrap();
        assert_eq!(d["at"], "error");
        assert_eq!(
            (d["main"]["code"].as_u64(), d["target"]["code"].as_u64()),
            (Some(1146), Some(1054))
        );
    }
}
