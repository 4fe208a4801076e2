//! The parameter types of COM_STMT_EXECUTE. A client sends them with a statement's first
//! execution only (libmariadb and libmysqlclient do: sysbench, most connectors). A target
//! connected again (reconnect=true) has the statement prepared by the replay, and its first
//! execution there must carry them, or the server cannot read the values. MaxScale keeps them
//! only for routers that declare a session-command history (mirror does not: see the README),
//! so mirror keeps them itself and puts them into that execution.

/// Offset, in the packet (header included), of the new-params-bound flag of a
/// COM_STMT_EXECUTE of a statement with `params` parameters.
fn flag_at(params: u16) -> usize {
    4 + 1 + 4 + 1 + 4 + (params as usize).div_ceil(8)
}

/// The types a COM_STMT_EXECUTE packet carries (2 bytes a parameter), if it does.
pub fn types_of(packet: &[u8], params: u16) -> Option<&[u8]> {
    let at = flag_at(params);
    if params == 0 || *packet.get(at)? != 1 {
        return None;
    }
    packet.get(at + 1..at + 1 + 2 * params as usize)
}

/// The packet with `types` put in, if it has none; None if it has them (or cannot take them).
pub fn with_types(packet: &[u8], params: u16, types: &[u8]) -> Option<Vec<u8>> {
    let at = flag_at(params);
    if params == 0 || types.len() != 2 * params as usize || *packet.get(at)? != 0 {
        return None;
    }
    let len = packet.len() - 4 + types.len();
    if len >= 0xff_ffff {
        return None;
    }
    let mut out = Vec::with_capacity(packet.len() + types.len());
    out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    out.push(packet[3]);
    out.extend_from_slice(&packet[4..at]);
    out.push(1);
    out.extend_from_slice(types);
    out.extend_from_slice(&packet[at + 1..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// COM_STMT_EXECUTE of statement 7, two parameters, values `values`.
    fn execute(bound: Option<&[u8]>, values: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0b00];
        match bound {
            Some(t) => {
                p.push(1);
                p.extend_from_slice(t);
            }
            None => p.push(0),
        }
        p.extend_from_slice(values);
        let mut out = (p.len() as u32).to_le_bytes()[..3].to_vec();
        out.push(0);
        out.extend(p);
        out
    }

    #[test]
    fn types_are_read_and_put_back() {
        let types = [0x08, 0x00, 0xfe, 0x00]; // LONGLONG, STRING
        let values = [5, 0, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'];
        let first = execute(Some(&types), &values);
        assert_eq!(types_of(&first, 2), Some(&types[..]));
        assert_eq!(with_types(&first, 2, &types), None, "it has them");
        let later = execute(None, &values);
        assert_eq!(types_of(&later, 2), None);
        assert_eq!(with_types(&later, 2, &types), Some(first));
        assert_eq!(
            with_types(&later, 0, &[]),
            None,
            "no parameters: nothing to add"
        );
        assert_eq!(with_types(&later[..8], 2, &types), None, "truncated");
    }
}
