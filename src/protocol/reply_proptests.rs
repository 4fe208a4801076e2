//! Property tests of the reply tracker. Valid replies are generated from a description (what
//! a server sends for each command, with DEPRECATE_EOF on and off) together with the counters
//! the tracker must end with; invalid ones are random packets or valid replies mutated.

use super::command::*;
use super::packet::{write_lenenc, write_lenenc_str, Packet};
use super::reply::tests::{self, eof};
use super::reply::{ReplyState, ReplyTracker};
use super::status::{CURSOR_EXISTS, LAST_ROW_SENT, MORE_RESULTS_EXIST};
use proptest::prelude::*;

/// A reply as the server sends it, and what the tracker must report at its end.
#[derive(Debug, Clone)]
struct Reply {
    command: u8,
    packets: Vec<Vec<u8>>,
    rows: u64,
    warnings: u16,
    resultset: bool,
    error: Option<u16>,
}

/// One result of a (multi-)result reply to COM_QUERY or COM_STMT_EXECUTE.
#[derive(Debug, Clone)]
enum Part {
    Ok {
        warnings: u16,
    },
    Rows {
        columns: Vec<Vec<u8>>,
        cached_metadata: bool,
        rows: Vec<Vec<u8>>,
        warnings: u16,
    },
    LocalInfile {
        file: Vec<u8>,
        warnings: u16,
    },
}

/// An OK packet with `header` (0x00, or 0xFE when it ends rows with DEPRECATE_EOF).
fn ok(header: u8, status: u16, warnings: u16) -> Vec<u8> {
    let mut p = tests::ok(status, warnings);
    p[0] = header;
    p
}

fn err(code: u16) -> Vec<u8> {
    let mut p = vec![0xFF];
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(b"#HY000something failed");
    p
}

/// The end of a result's rows: an EOF, or with DEPRECATE_EOF an OK with the EOF header.
fn end_of_rows(deprecate_eof: bool, status: u16, warnings: u16) -> Vec<u8> {
    if deprecate_eof {
        ok(0xFE, status, warnings)
    } else {
        eof(status, warnings)
    }
}

fn coldef(name: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    for s in [b"def".as_slice(), b"db", b"t", b"t", name, name] {
        write_lenenc_str(&mut p, s);
    }
    p.extend_from_slice(&[0x0C, 0x21, 0, 0x10, 0, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
    p
}

fn column_name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..12)
}

/// A text row: each value NULL or a length-encoded string (up to 300 bytes, so both the
/// one-byte and the 0xFC length forms occur).
fn text_row(columns: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::option::weighted(0.9, prop::collection::vec(any::<u8>(), 0..300)),
        columns,
    )
    .prop_map(|vals| {
        let mut p = Vec::new();
        for v in vals {
            match v {
                None => p.push(0xFB),
                Some(s) => write_lenenc_str(&mut p, &s),
            }
        }
        p
    })
}

/// A binary row: 0x00, the NULL bitmap, values (any bytes: the tracker does not read them).
fn binary_row(columns: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), (columns + 9) / 8..40).prop_map(|rest| {
        let mut p = vec![0x00];
        p.extend_from_slice(&rest);
        p
    })
}

fn part(binary: bool) -> impl Strategy<Value = Part> {
    let rows = (1usize..5).prop_flat_map(move |n| {
        let row = if binary {
            binary_row(n).boxed()
        } else {
            text_row(n).boxed()
        };
        (
            prop::collection::vec(column_name(), n),
            any::<bool>(),
            prop::collection::vec(row, 0..6),
            any::<u16>(),
        )
            .prop_map(|(columns, cached_metadata, rows, warnings)| Part::Rows {
                columns,
                cached_metadata,
                rows,
                warnings,
            })
    });
    let infile = (prop::collection::vec(any::<u8>(), 0..20), any::<u16>())
        .prop_map(|(file, warnings)| Part::LocalInfile { file, warnings });
    if binary {
        prop_oneof![
            any::<u16>().prop_map(|warnings| Part::Ok { warnings }),
            rows
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<u16>().prop_map(|warnings| Part::Ok { warnings }),
            rows,
            infile
        ]
        .boxed()
    }
}

/// A reply to COM_QUERY (text rows, LOCAL INFILE) or COM_STMT_EXECUTE (binary rows): one or more
/// results, the last one possibly an ERR.
fn results(deprecate_eof: bool) -> impl Strategy<Value = Reply> {
    any::<bool>().prop_flat_map(move |binary| {
        (
            prop::collection::vec(part(binary), 1..4),
            prop::option::of(any::<u16>()),
        )
            .prop_map(move |(parts, error)| {
                let command = if binary { COM_STMT_EXECUTE } else { COM_QUERY };
                let mut r = Reply {
                    command,
                    packets: vec![],
                    rows: 0,
                    warnings: 0,
                    resultset: false,
                    error,
                };
                let n = parts.len();
                for (i, part) in parts.into_iter().enumerate() {
                    let more = i + 1 < n || error.is_some();
                    let status = 0x0002 | if more { MORE_RESULTS_EXIST } else { 0 };
                    match part {
                        Part::Ok { warnings } => {
                            r.packets.push(ok(0x00, status, warnings));
                            r.warnings = warnings;
                        }
                        Part::LocalInfile { file, warnings } => {
                            let mut req = vec![0xFB];
                            req.extend_from_slice(&file);
                            r.packets.push(req);
                            r.packets.push(ok(0x00, status, warnings));
                            r.warnings = warnings;
                        }
                        Part::Rows {
                            columns,
                            cached_metadata,
                            rows,
                            warnings,
                        } => {
                            let mut head = Vec::new();
                            write_lenenc(&mut head, columns.len() as u64);
                            if cached_metadata {
                                head.push(0);
                            }
                            r.packets.push(head);
                            if !cached_metadata {
                                r.packets.extend(columns.iter().map(|c| coldef(c)));
                            }
                            if !deprecate_eof {
                                r.packets.push(eof(0x0002, 0));
                            }
                            r.rows += rows.len() as u64;
                            r.packets.extend(rows);
                            r.packets.push(end_of_rows(deprecate_eof, status, warnings));
                            r.warnings = warnings;
                            r.resultset = true;
                        }
                    }
                }
                if let Some(code) = error {
                    r.packets.push(err(code));
                }
                r
            })
    })
}

/// A COM_STMT_PREPARE reply: the statement OK, parameter and column definitions, each section
/// ended by an EOF unless DEPRECATE_EOF; or an ERR.
fn prepare(deprecate_eof: bool) -> impl Strategy<Value = Reply> {
    (0u16..5, 0u16..5, any::<bool>()).prop_map(move |(params, columns, fails)| {
        let mut r = Reply {
            command: COM_STMT_PREPARE,
            packets: vec![],
            rows: 0,
            warnings: 0,
            resultset: false,
            error: None,
        };
        if fails {
            r.packets.push(err(1064));
            r.error = Some(1064);
            return r;
        }
        let mut head = vec![0x00, 7, 0, 0, 0];
        head.extend_from_slice(&columns.to_le_bytes());
        head.extend_from_slice(&params.to_le_bytes());
        head.extend_from_slice(&[0, 3, 0]);
        r.packets.push(head);
        for n in [params, columns] {
            r.packets.extend((0..n).map(|_| coldef(b"?")));
            if n > 0 && !deprecate_eof {
                r.packets.push(eof(2, 0));
            }
        }
        r
    })
}

/// COM_STMT_EXECUTE that opens a cursor (ends after the column EOF), or the COM_STMT_FETCH of
/// its rows. MaxScale tracks cursors in the classic protocol only, and so does the tracker.
fn cursor() -> impl Strategy<Value = Reply> {
    (1usize..4, any::<bool>(), 0usize..6, any::<bool>()).prop_flat_map(
        |(columns, fetch, n, last)| {
            prop::collection::vec(binary_row(columns), n).prop_map(move |rows| {
                let mut r = Reply {
                    command: COM_STMT_EXECUTE,
                    packets: vec![],
                    rows: 0,
                    warnings: 0,
                    resultset: true,
                    error: None,
                };
                if fetch {
                    r.command = COM_STMT_FETCH;
                    r.resultset = false;
                    r.rows = rows.len() as u64;
                    r.packets.extend(rows);
                    r.packets.push(eof(
                        0x0002 | CURSOR_EXISTS | if last { LAST_ROW_SENT } else { 0 },
                        0,
                    ));
                } else {
                    r.packets.push(vec![columns as u8]);
                    r.packets.extend((0..columns).map(|_| coldef(b"c")));
                    r.packets.push(eof(0x0002 | CURSOR_EXISTS, 0));
                }
                r
            })
        },
    )
}

/// COM_FIELD_LIST, COM_CHANGE_USER (with an auth switch), COM_STATISTICS, COM_PING.
fn other(deprecate_eof: bool) -> impl Strategy<Value = Reply> {
    let field_list = prop::collection::vec(column_name(), 0..5).prop_map(move |names| {
        let mut packets: Vec<Vec<u8>> = names.iter().map(|n| coldef(n)).collect();
        packets.push(end_of_rows(deprecate_eof, 2, 0));
        Reply {
            command: COM_FIELD_LIST,
            rows: names.len() as u64,
            packets,
            warnings: 0,
            resultset: false,
            error: None,
        }
    });
    let change_user =
        (any::<bool>(), 0usize..3, any::<bool>()).prop_map(|(switch, more, fails)| {
            let mut packets = Vec::new();
            if switch {
                let mut p = vec![0xFE];
                p.extend_from_slice(b"mysql_native_password\0abcdefghijklmnopqrst\0");
                packets.push(p);
            }
            packets.extend((0..more).map(|i| vec![0x01, i as u8, 3]));
            packets.push(if fails { err(1045) } else { ok(0x00, 2, 0) });
            Reply {
                command: COM_CHANGE_USER,
                packets,
                rows: 0,
                warnings: 0,
                resultset: false,
                error: fails.then_some(1045),
            }
        });
    let statistics = prop::collection::vec(any::<u8>(), 1..40)
        .prop_filter("not an ERR", |p| p[0] != 0xFF)
        .prop_map(|p| Reply {
            command: COM_STATISTICS,
            packets: vec![p],
            rows: 0,
            warnings: 0,
            resultset: false,
            error: None,
        });
    let ping = Just(Reply {
        command: COM_PING,
        packets: vec![ok(0, 2, 0)],
        rows: 0,
        warnings: 0,
        resultset: false,
        error: None,
    });
    prop_oneof![field_list, change_user, statistics, ping]
}

fn reply() -> impl Strategy<Value = (bool, Reply)> {
    any::<bool>().prop_flat_map(|d| {
        let classic_only = if d {
            prepare(d).boxed()
        } else {
            cursor().boxed()
        };
        (
            Just(d),
            prop_oneof![4 => results(d), 2 => prepare(d), 1 => classic_only, 2 => other(d)],
        )
    })
}

fn packet(seq: usize, payload: &[u8]) -> Packet<'_> {
    Packet {
        seq: seq as u8,
        payload,
    }
}

/// Feeds a possibly broken stream: never panics; once the reply is complete or a violation was
/// reported, any further packet is refused.
fn feed_untrusted(t: &mut ReplyTracker, packets: &[Vec<u8>]) -> Result<(), TestCaseError> {
    for (i, p) in packets.iter().enumerate() {
        let was_complete = t.is_complete();
        match t.feed(&packet(i + 1, p)) {
            Ok(()) => prop_assert!(
                !was_complete,
                "packet {i} accepted after the reply was complete"
            ),
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// A mutation of a valid reply: a byte changed, a packet cut short, dropped, repeated or added.
#[derive(Debug, Clone)]
enum Mutation {
    Byte(prop::sample::Index, prop::sample::Index, u8),
    Truncate(prop::sample::Index, prop::sample::Index),
    Drop(prop::sample::Index),
    Repeat(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        (any::<Index>(), any::<Index>(), any::<u8>()).prop_map(|(a, b, v)| Mutation::Byte(a, b, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Truncate(a, b)),
        any::<Index>().prop_map(Mutation::Drop),
        any::<Index>().prop_map(Mutation::Repeat),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(a, p)| Mutation::Insert(a, p)),
    ]
}

fn mutate(packets: &mut Vec<Vec<u8>>, m: &Mutation) {
    if packets.is_empty() {
        return;
    }
    let n = packets.len();
    match m {
        Mutation::Byte(a, b, v) => {
            let p = &mut packets[a.index(n)];
            if !p.is_empty() {
                let i = b.index(p.len());
                p[i] = *v;
            }
        }
        Mutation::Truncate(a, b) => {
            let p = &mut packets[a.index(n)];
            let len = b.index(p.len() + 1);
            p.truncate(len);
        }
        Mutation::Drop(a) => {
            packets.remove(a.index(n));
        }
        Mutation::Repeat(a) => {
            let i = a.index(n);
            packets.insert(i, packets[i].clone());
        }
        Mutation::Insert(a, p) => packets.insert(a.index(n + 1), p.clone()),
    }
}

fn any_command() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            COM_QUERY,
            COM_STMT_PREPARE,
            COM_STMT_EXECUTE,
            COM_STMT_FETCH,
            COM_FIELD_LIST,
            COM_CHANGE_USER,
            COM_STATISTICS,
            COM_PING
        ]),
        any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A valid reply is complete after its last packet and not one packet earlier, with the
    /// rows, warnings, kind and error the server sent.
    #[test]
    fn complete_exactly_at_the_last_packet((deprecate_eof, r) in reply()) {
        let mut t = ReplyTracker::new(deprecate_eof);
        t.start(r.command);
        let last = r.packets.len() - 1;
        for (i, p) in r.packets.iter().enumerate() {
            prop_assert!(!t.is_complete(), "complete before packet {} of {}: {:?}", i, r.packets.len(), t.state());
            if let Err(e) = t.feed(&packet(i + 1, p)) {
                return Err(TestCaseError::fail(format!("packet {i}: {e}")));
            }
            if i < last {
                prop_assert!(t.is_active());
            }
        }
        prop_assert!(t.is_complete(), "not complete after the last packet: {:?}", t.state());
        prop_assert_eq!(t.rows(), r.rows);
        prop_assert_eq!(t.is_resultset(), r.resultset);
        prop_assert_eq!(t.error().map(|e| e.code), r.error);
        if r.error.is_none() && r.command != COM_STMT_PREPARE && r.command != COM_STMT_FETCH {
            prop_assert_eq!(t.warnings(), r.warnings);
        }
        // The connection is idle again: one more packet is a protocol violation.
        prop_assert!(t.feed(&packet(0, &ok(0, 2, 0))).is_err());
    }

    /// The same reply fed twice to one tracker (start resets it): same result both times.
    #[test]
    fn tracker_is_reusable((deprecate_eof, r) in reply()) {
        let mut t = ReplyTracker::new(deprecate_eof);
        for _ in 0..2 {
            t.start(r.command);
            for (i, p) in r.packets.iter().enumerate() {
                prop_assert!(t.feed(&packet(i + 1, p)).is_ok());
            }
            prop_assert!(t.is_complete());
            prop_assert_eq!(t.rows(), r.rows);
        }
    }

    /// Valid replies with up to four mutations: never a panic, nothing accepted after the end.
    #[test]
    fn mutated_replies_never_panic((deprecate_eof, r) in reply(), ms in prop::collection::vec(mutation(), 1..4)) {
        let mut packets = r.packets.clone();
        for m in &ms {
            mutate(&mut packets, m);
        }
        let mut t = ReplyTracker::new(deprecate_eof);
        t.start(r.command);
        feed_untrusted(&mut t, &packets)?;
    }

    /// Random packets after any command (known or not).
    #[test]
    fn random_packets_never_panic(
        deprecate_eof in any::<bool>(),
        command in any_command(),
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..12),
    ) {
        let mut t = ReplyTracker::new(deprecate_eof);
        t.start(command);
        feed_untrusted(&mut t, &packets)?;
        if t.state() == ReplyState::Idle {
            prop_assert!(false, "start() leaves the idle state");
        }
    }
}
