//! Reading the rows of a text result set as they stream by, and rebuilding a result set from
//! packets collected from several servers (a router that merges results).

use super::packet::{read_lenenc, write_packet, Packet};
use super::reply::ReplyState;

/// Whether `p`, read while the reply tracker was in `state_before`, is a row packet (not the
/// EOF/OK that ends the rows, nor an ERR).
pub fn is_row(state_before: ReplyState, p: &Packet<'_>, deprecate_eof: bool) -> bool {
    if state_before != ReplyState::Rows {
        return false;
    }
    match p.first() {
        None | Some(0xFF) => false,
        Some(0xFE) => {
            let limit = if deprecate_eof { 0xFF_FFFF } else { 9 };
            p.payload.len() >= limit
        }
        _ => true,
    }
}

/// The values of a text-protocol row (`None` for NULL); `None` if the payload is malformed.
pub fn text_row(payload: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        if rest[0] == 0xFB {
            out.push(None);
            rest = &rest[1..];
            continue;
        }
        let (n, used) = read_lenenc(rest)?;
        let end = used.checked_add(usize::try_from(n).ok()?)?;
        out.push(Some(rest.get(used..end)?));
        rest = &rest[end..];
    }
    Some(out)
}

/// A complete result set from payloads: the column-count packet, the column definitions and
/// the rows (as servers sent them), with fresh sequence numbers from 1 and EOFs as the client
/// negotiated.
pub fn resultset_from_payloads(
    count: &[u8],
    coldefs: &[Vec<u8>],
    rows: &[Vec<u8>],
    status: u16,
    deprecate_eof: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 1u8;
    let mut put = |out: &mut Vec<u8>, pl: &[u8]| {
        write_packet(out, seq, pl);
        seq = seq.wrapping_add(1);
    };
    put(&mut out, count);
    for c in coldefs {
        put(&mut out, c);
    }
    let mut eof = vec![0xFE, 0, 0];
    eof.extend_from_slice(&status.to_le_bytes());
    if !deprecate_eof {
        put(&mut out, &eof);
    }
    for r in rows {
        put(&mut out, r);
    }
    if deprecate_eof {
        let mut ok = vec![0xFE, 0, 0];
        ok.extend_from_slice(&status.to_le_bytes());
        ok.extend_from_slice(&[0, 0]);
        put(&mut out, &ok);
    } else {
        put(&mut out, &eof);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::command::COM_QUERY;
    use super::super::packet::Packets;
    use super::super::reply::ReplyTracker;
    use super::super::resultset::text_resultset;
    use super::*;

    #[test]
    fn rows_are_found_and_rebuilt() {
        for dep in [false, true] {
            let rows = vec![
                vec![Some("a".to_string()), None],
                vec![Some("x".repeat(300)), Some("b".into())],
            ];
            let buf = text_resultset(&["c1", "c2"], &rows, 2, dep);
            let mut t = ReplyTracker::new(dep);
            t.start(COM_QUERY);
            let (mut count, mut defs, mut got) = (Vec::new(), Vec::new(), Vec::new());
            for (i, p) in Packets::new(&buf).enumerate() {
                let p = p.unwrap();
                let before = t.state();
                if is_row(before, &p, dep) {
                    got.push(p.payload.to_vec());
                } else if i == 0 {
                    count = p.payload.to_vec();
                } else if matches!(before, ReplyState::ColumnDefs { .. }) {
                    defs.push(p.payload.to_vec());
                }
                t.feed(&p).unwrap();
            }
            assert_eq!(got.len(), 2);
            let v = text_row(&got[0]).unwrap();
            assert_eq!(v, vec![Some(&b"a"[..]), None]);
            assert_eq!(text_row(&got[1]).unwrap()[0].unwrap().len(), 300);
            assert!(text_row(&[0x05, b'a']).is_none());
            assert_eq!(resultset_from_payloads(&count, &defs, &got, 2, dep), buf);
        }
    }
}
