//! Decoder for the pgoutput messages of protocol versions 1 and 2: Begin, Commit, Relation,
//! Insert, Update, Delete, Truncate (PostgreSQL 11+), and the streamed in-progress transactions
//! of version 2 (PostgreSQL 14+: Stream Start/Stop/Commit/Abort; inside a stream block every
//! change message carries the (sub)transaction id after its tag).

use anyhow::{anyhow, bail, Result};

#[derive(Debug, Clone)]
pub struct RelColumn {
    /// part of the replica identity
    #[allow(dead_code)]
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    #[allow(dead_code)]
    pub replident: u8,
    pub columns: Vec<RelColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Unchanged,
    Text(String),
}

#[derive(Debug)]
pub enum Msg {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Cell>,
    },
    Update {
        rel: u32,
        old: Option<Vec<Cell>>,
        new: Vec<Cell>,
    },
    Delete {
        rel: u32,
        old: Vec<Cell>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    Begin {
        /// the commit's LSN
        final_lsn: u64,
        xid: u32,
    },
    Commit {
        end_lsn: u64,
        /// microseconds since 2000-01-01
        commit_time: i64,
    },
    StreamStart {
        xid: u32,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
    Other(#[allow(dead_code)] u8),
}

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn u8(&mut self) -> Result<u8> {
        let v = *self
            .b
            .get(self.i)
            .ok_or_else(|| anyhow!("pgoutput: message truncated"))?;
        self.i += 1;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.i + n > self.b.len() {
            bail!("pgoutput: message truncated");
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn cstr(&mut self) -> Result<String> {
        let rest = &self.b[self.i..];
        let n = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| anyhow!("pgoutput: unterminated string"))?;
        let s = String::from_utf8(rest[..n].to_vec())?;
        self.i += n + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Cell>> {
        let n = self.u16()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    Cell::Text(String::from_utf8(self.take(len)?.to_vec())?)
                }
                b'b' => bail!("pgoutput: binary tuple data not requested"),
                k => bail!("pgoutput: unknown tuple column kind {k:?}"),
            });
        }
        Ok(out)
    }
}

/// Decodes one message; `in_stream`: it came between Stream Start and Stream Stop, where change
/// messages carry a transaction id, which is returned.
pub fn parse(data: &[u8], in_stream: bool) -> Result<(Option<u32>, Msg)> {
    let mut c = Cur { b: data, i: 0 };
    let tag = c.u8()?;
    let xid = if in_stream && matches!(tag, b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M') {
        Some(c.u32()?)
    } else {
        None
    };
    Ok((xid, body(tag, &mut c)?))
}

fn body(tag: u8, c: &mut Cur) -> Result<Msg> {
    Ok(match tag {
        b'B' => {
            let final_lsn = c.u64()?;
            let _commit_time = c.u64()?;
            Msg::Begin {
                final_lsn,
                xid: c.u32()?,
            }
        }
        b'C' => {
            let _flags = c.u8()?;
            let _commit_lsn = c.u64()?;
            Msg::Commit {
                end_lsn: c.u64()?,
                commit_time: c.u64()? as i64,
            }
        }
        b'S' => Msg::StreamStart { xid: c.u32()? },
        b'E' => Msg::StreamStop,
        b'c' => {
            let xid = c.u32()?;
            let _flags = c.u8()?;
            Msg::StreamCommit {
                xid,
                commit_lsn: c.u64()?,
                end_lsn: c.u64()?,
                commit_time: c.u64()? as i64,
            }
        }
        b'A' => Msg::StreamAbort {
            xid: c.u32()?,
            subxid: c.u32()?,
        },
        b'R' => {
            let id = c.u32()?;
            let namespace = c.cstr()?;
            let name = c.cstr()?;
            let replident = c.u8()?;
            let n = c.u16()? as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = c.u8()?;
                let cname = c.cstr()?;
                let type_oid = c.u32()?;
                let _typmod = c.u32()?;
                columns.push(RelColumn {
                    key: flags & 1 == 1,
                    name: cname,
                    type_oid,
                });
            }
            Msg::Relation(Relation {
                id,
                namespace,
                name,
                replident,
                columns,
            })
        }
        b'I' => {
            let rel = c.u32()?;
            if c.u8()? != b'N' {
                bail!("pgoutput: insert without new tuple");
            }
            Msg::Insert {
                rel,
                new: c.tuple()?,
            }
        }
        b'U' => {
            let rel = c.u32()?;
            let mut old = None;
            let mut k = c.u8()?;
            if k == b'K' || k == b'O' {
                old = Some(c.tuple()?);
                k = c.u8()?;
            }
            if k != b'N' {
                bail!("pgoutput: update without new tuple");
            }
            Msg::Update {
                rel,
                old,
                new: c.tuple()?,
            }
        }
        b'D' => {
            let rel = c.u32()?;
            let k = c.u8()?;
            if k != b'K' && k != b'O' {
                bail!("pgoutput: delete without old tuple");
            }
            Msg::Delete {
                rel,
                old: c.tuple()?,
            }
        }
        b'T' => {
            let n = c.u32()? as usize;
            let _opts = c.u8()?;
            let mut rels = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                rels.push(c.u32()?);
            }
            Msg::Truncate { rels }
        }
        other => Msg::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_and_update() {
        let mut r = vec![b'R'];
        r.extend(16384u32.to_be_bytes());
        r.extend(b"public\0t\0d");
        r.extend(2u16.to_be_bytes());
        r.push(1);
        r.extend(b"id\0");
        r.extend(23u32.to_be_bytes());
        r.extend((-1i32).to_be_bytes());
        r.push(0);
        r.extend(b"v\0");
        r.extend(25u32.to_be_bytes());
        r.extend((-1i32).to_be_bytes());
        let (None, Msg::Relation(rel)) = parse(&r, false).unwrap() else {
            panic!()
        };
        assert_eq!(rel.name, "t");
        assert!(rel.columns[0].key && !rel.columns[1].key);

        let mut u = vec![b'U'];
        u.extend(16384u32.to_be_bytes());
        u.push(b'N');
        u.extend(2u16.to_be_bytes());
        u.push(b't');
        u.extend(1u32.to_be_bytes());
        u.push(b'7');
        u.push(b'u');
        let (None, Msg::Update { old, new, .. }) = parse(&u, false).unwrap() else {
            panic!()
        };
        assert!(old.is_none());
        assert_eq!(new, vec![Cell::Text("7".into()), Cell::Unchanged]);
        assert!(parse(&u[..u.len() - 3], false).is_err());
        // the same update inside a stream block: the subtransaction id follows the tag
        let mut su = vec![b'U'];
        su.extend(777u32.to_be_bytes());
        su.extend(&u[1..]);
        let (Some(777), Msg::Update { new: snew, .. }) = parse(&su, true).unwrap() else {
            panic!()
        };
        assert_eq!(snew, new);
    }

    #[test]
    fn stream_commit_and_abort() {
        let mut m = vec![b'c'];
        m.extend(9u32.to_be_bytes());
        m.push(0);
        m.extend(0x1_0000_0010u64.to_be_bytes());
        m.extend(0x1_0000_0040u64.to_be_bytes());
        m.extend(5i64.to_be_bytes());
        let (
            _,
            Msg::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
            },
        ) = parse(&m, false).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (xid, commit_lsn, end_lsn, commit_time),
            (9, 0x1_0000_0010, 0x1_0000_0040, 5)
        );
        let mut a = vec![b'A'];
        a.extend(9u32.to_be_bytes());
        a.extend(11u32.to_be_bytes());
        assert!(matches!(
            parse(&a, false).unwrap().1,
            Msg::StreamAbort { xid: 9, subxid: 11 }
        ));
        assert!(parse(&a[..6], false).is_err());
    }
}
