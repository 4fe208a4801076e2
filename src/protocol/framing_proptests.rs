//! Property tests of packet framing: payloads framed as the protocol says (16 MiB - 1 byte
//! chunks, an empty packet after an exact multiple) come back equal, however the byte stream
//! is cut into reads.

use super::packet::{write_packet, Packet, PacketError, Packets, HEADER_LEN, MAX_PAYLOAD};
use proptest::prelude::*;

/// Frames one logical payload: full chunks with a maximal length, then a shorter last packet
/// (empty when the payload is an exact multiple of the maximum).
fn frame(out: &mut Vec<u8>, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        if n == MAX_PAYLOAD {
            out.extend_from_slice(&[0xFF, 0xFF, 0xFF, *seq]);
            out.extend_from_slice(&rest[..n]);
        } else {
            write_packet(out, *seq, &rest[..n]);
        }
        *seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return;
        }
    }
}

/// A reader that is given the stream in pieces, as a socket would: it parses the complete
/// packets of what it has and keeps the rest from the offset the truncation error names.
#[derive(Default)]
struct Reader {
    buf: Vec<u8>,
    partial: Vec<u8>,
    seqs: Vec<u8>,
    payloads: Vec<Vec<u8>>,
}

impl Reader {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        let mut consumed = 0;
        for p in Packets::new(&self.buf) {
            match p {
                Ok(Packet { seq, payload }) => {
                    consumed += HEADER_LEN + payload.len();
                    self.seqs.push(seq);
                    self.partial.extend_from_slice(payload);
                    if payload.len() < MAX_PAYLOAD {
                        self.payloads.push(std::mem::take(&mut self.partial));
                    }
                }
                Err(PacketError::Truncated {
                    offset,
                    needed,
                    have,
                }) => {
                    assert_eq!(
                        offset, consumed,
                        "a truncation is reported where the incomplete packet starts"
                    );
                    assert!(have < needed, "truncated: {have} present of {needed}");
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
    }
}

fn stream(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 0u8;
    for p in payloads {
        frame(&mut out, &mut seq, p);
    }
    out
}

fn read_in_pieces(bytes: &[u8], cuts: &[usize]) -> Reader {
    let mut r = Reader::default();
    let mut at = 0;
    for &c in cuts {
        r.push(&bytes[at..c]);
        at = c;
    }
    r.push(&bytes[at..]);
    r
}

fn small_payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Cut once at every byte boundary: the payloads come back whole, in order.
    #[test]
    fn split_at_every_boundary(payloads in small_payloads()) {
        let bytes = stream(&payloads);
        for cut in 0..=bytes.len() {
            let r = read_in_pieces(&bytes, &[cut]);
            prop_assert_eq!(&r.payloads, &payloads);
            prop_assert!(r.buf.is_empty() && r.partial.is_empty());
            prop_assert_eq!(r.seqs, (0..payloads.len() as u8).collect::<Vec<_>>());
        }
    }

    /// Any number of reads of any size.
    #[test]
    fn split_into_random_reads(payloads in small_payloads(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20)) {
        let bytes = stream(&payloads);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let r = read_in_pieces(&bytes, &cuts);
        prop_assert_eq!(r.payloads, payloads);
    }

    /// Arbitrary bytes: the iterator ends, never reads past the buffer, and every packet it
    /// yields lies inside it.
    #[test]
    fn arbitrary_bytes_never_overrun(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut total = 0;
        for p in Packets::new(&bytes) {
            match p {
                Ok(p) => total += HEADER_LEN + p.payload.len(),
                Err(PacketError::Truncated { offset, .. }) => {
                    prop_assert_eq!(offset, total);
                    total = bytes.len();
                }
            }
        }
        prop_assert_eq!(total, bytes.len());
    }
}

/// Payloads of 16 MiB and more: exactly the maximum (followed by an empty packet), twice the
/// maximum, and more, each cut around every packet header and at a few places inside.
#[test]
fn continuations_of_16_mib_and_more() {
    let big = |n: usize| (0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>();
    let payloads = vec![
        b"\x03SELECT 1".to_vec(),
        big(MAX_PAYLOAD),
        big(MAX_PAYLOAD + 7),
        big(2 * MAX_PAYLOAD),
        vec![],
    ];
    let bytes = stream(&payloads);
    // Where the headers are.
    let mut headers = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        headers.push(at);
        at +=
            HEADER_LEN + u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], 0]) as usize;
    }
    assert_eq!(
        headers.len(),
        1 + 2 + 2 + 3 + 1,
        "the chunks the protocol prescribes"
    );
    let mut cuts: Vec<usize> = headers
        .iter()
        .flat_map(|&h| {
            [
                h.saturating_sub(1),
                h,
                h + 1,
                h + HEADER_LEN - 1,
                h + HEADER_LEN,
            ]
        })
        .filter(|&c| c <= bytes.len())
        .chain([bytes.len() / 3, bytes.len() / 2])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    for &cut in &cuts {
        let r = read_in_pieces(&bytes, &[cut]);
        assert!(r.payloads == payloads, "cut at {cut}: payloads differ");
    }
    // All the cuts at once: many small reads around every header.
    let r = read_in_pieces(&bytes, &cuts);
    assert!(r.payloads == payloads, "many cuts: payloads differ");
}
