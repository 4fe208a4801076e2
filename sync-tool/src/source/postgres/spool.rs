//! The messages of one streamed in-progress transaction, kept in an unnamed temporary file until
//! its commit (a transaction may be larger than memory) and dropped at its abort. Messages of
//! an aborted subtransaction are left out of the replay.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};

pub struct Spool {
    file: BufWriter<File>,
    aborted: HashSet<u32>,
    len: usize,
}

impl Spool {
    pub fn new() -> Result<Spool> {
        let f = tempfile::tempfile().context("temporary file for a streamed transaction")?;
        Ok(Spool {
            file: BufWriter::with_capacity(256 * 1024, f),
            aborted: HashSet::new(),
            len: 0,
        })
    }

    /// Appends a message of (sub)transaction `xid`.
    pub fn push(&mut self, xid: u32, msg: &[u8]) -> Result<()> {
        self.file.write_all(&xid.to_be_bytes())?;
        self.file.write_all(&(msg.len() as u32).to_be_bytes())?;
        self.file.write_all(msg)?;
        self.len += 1;
        Ok(())
    }

    pub fn abort_subtransaction(&mut self, subxid: u32) {
        self.aborted.insert(subxid);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The messages in order, without those of aborted subtransactions.
    pub fn replay(self) -> Result<impl Iterator<Item = Result<Vec<u8>>>> {
        let mut f = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .context("spool flush")?;
        f.seek(SeekFrom::Start(0))?;
        let mut r = BufReader::with_capacity(256 * 1024, f);
        let aborted = self.aborted;
        let mut left = self.len;
        Ok(std::iter::from_fn(move || loop {
            if left == 0 {
                return None;
            }
            left -= 1;
            let mut head = [0u8; 8];
            if let Err(e) = r.read_exact(&mut head) {
                return Some(Err(e.into()));
            }
            let xid = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let mut msg =
                vec![0u8; u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize];
            if let Err(e) = r.read_exact(&mut msg) {
                return Some(Err(e.into()));
            }
            if !aborted.contains(&xid) {
                return Some(Ok(msg));
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_leaves_out_aborted_subtransactions() {
        let mut s = Spool::new().unwrap();
        s.push(1, b"a").unwrap();
        s.push(2, b"b").unwrap();
        s.push(1, &vec![7u8; 300_000]).unwrap();
        s.abort_subtransaction(2);
        let got: Vec<Vec<u8>> = s.replay().unwrap().map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], b"a");
        assert_eq!(got[1].len(), 300_000);
    }
}
