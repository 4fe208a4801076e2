//! Export files and standard input. Gzip is recognised by its magic bytes, not the name,
//! and concatenated gzip members (as `cat a.gz b.gz` gives) are read through.

use super::{LineFn, ReadInfo};
use crate::analysis::Origin;
use crate::progress::Progress;
use flate2::read::MultiGzDecoder;
use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

const BUFFER: usize = 1 << 20;

/// Counts the bytes read from the file underneath (compressed bytes for gzip), for progress.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

struct Input {
    path: Option<PathBuf>,
    size: u64,
    mtime_ms: Option<i64>,
}

fn stat(path: &Path) -> Result<Input, String> {
    let md =
        std::fs::metadata(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    if md.is_dir() {
        return Err(format!(
            "'{}' is a directory, not an export file",
            path.display()
        ));
    }
    let mtime_ms = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    Ok(Input {
        path: Some(path.to_path_buf()),
        size: md.len(),
        mtime_ms,
    })
}

/// The inputs in reading order: standard input where `-` is given (or nothing), files oldest
/// first. Every file is checked before any is read, so a typo fails at once.
fn plan(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    if paths.is_empty() {
        return Ok(vec![Input {
            path: None,
            size: 0,
            mtime_ms: None,
        }]);
    }
    let mut inputs = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            inputs.push(Input {
                path: None,
                size: 0,
                mtime_ms: None,
            });
        } else {
            inputs.push(stat(p)?);
        }
    }
    // Stable: files with equal times (and standard input) keep the order given.
    inputs.sort_by_key(|i| i.mtime_ms.unwrap_or(i64::MIN));
    Ok(inputs)
}

pub fn read(paths: &[PathBuf], quiet: bool, on_line: &mut LineFn<'_>) -> Result<ReadInfo, String> {
    let inputs = plan(paths)?;
    let total: u64 = inputs.iter().map(|i| i.size).sum();
    let known = inputs.iter().all(|i| i.path.is_some());
    let mut progress = Progress::new(known.then_some(total), quiet);
    let mut info = ReadInfo::default();
    let consumed = Rc::new(Cell::new(0u64));
    let mut done_before = 0u64;
    for input in &inputs {
        let name = input
            .path
            .as_ref()
            .map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string());
        let raw: Box<dyn Read> = match &input.path {
            Some(p) => {
                Box::new(File::open(p).map_err(|e| format!("cannot open '{}': {e}", p.display()))?)
            }
            None => Box::new(io::stdin().lock()),
        };
        consumed.set(0);
        let mut head = BufReader::with_capacity(
            BUFFER,
            Counting {
                inner: raw,
                read: consumed.clone(),
            },
        );
        let gzip = head
            .fill_buf()
            .map_err(|e| format!("cannot read {name}: {e}"))?
            .starts_with(&[0x1f, 0x8b]);
        let mut reader: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(head)))
        } else {
            Box::new(head)
        };
        let mut line = Vec::with_capacity(4096);
        let mut n = 0u64;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    n += 1;
                    on_line(
                        &line,
                        &Origin {
                            source: &name,
                            line: n,
                            time_ms: None,
                        },
                    );
                    progress.line(|| done_before + consumed.get());
                }
                Err(e) => {
                    // A file cut short (still being written, or rotated mid-way): keep what was read.
                    info.notes
                        .push(format!("{name}: reading stopped after line {n}: {e}"));
                    break;
                }
            }
        }
        done_before += input.size;
        info.sources
            .push(if gzip { format!("{name} (gzip)") } else { name });
        info.mtimes_ms.extend(input.mtime_ms);
    }
    progress.finish();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn collect(paths: &[PathBuf]) -> (Vec<String>, ReadInfo) {
        let mut lines = Vec::new();
        let info = read(paths, true, &mut |l: &[u8], o: &Origin<'_>| {
            lines.push(format!(
                "{}:{}:{}",
                o.source.rsplit('/').next().unwrap(),
                o.line,
                String::from_utf8_lossy(l).trim_end()
            ))
        })
        .unwrap();
        (lines, info)
    }

    fn set_mtime(p: &Path, secs: u64) {
        let f = File::options().write(true).open(p).unwrap();
        f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn rotated_plain_and_gzip_files_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let cur = d.path().join("m.jsonl");
        let one = d.path().join("m.jsonl.1");
        let two = d.path().join("m.jsonl.2.gz");
        std::fs::write(&cur, "c1\nc2").unwrap();
        std::fs::write(&one, "b1\n").unwrap();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a1\n").unwrap();
        let mut bytes = gz.finish().unwrap();
        let mut gz2 = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz2.write_all(b"a2\n").unwrap();
        bytes.extend(gz2.finish().unwrap());
        std::fs::write(&two, bytes).unwrap();
        set_mtime(&two, 1000);
        set_mtime(&one, 2000);
        set_mtime(&cur, 3000);
        let (lines, info) = collect(&[cur, one, two]);
        assert_eq!(
            lines,
            [
                "m.jsonl.2.gz:1:a1",
                "m.jsonl.2.gz:2:a2",
                "m.jsonl.1:1:b1",
                "m.jsonl:1:c1",
                "m.jsonl:2:c2"
            ]
        );
        assert!(info.sources[0].ends_with("(gzip)"));
        assert_eq!(info.mtimes_ms, [1_000_000, 2_000_000, 3_000_000]);
    }

    #[test]
    fn truncated_gzip_keeps_what_was_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cut.gz");
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..10_000 {
            writeln!(gz, "line {i} with some text to compress").unwrap();
        }
        let bytes = gz.finish().unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let (lines, info) = collect(&[p]);
        assert!(!lines.is_empty() && lines.len() < 10_000, "{}", lines.len());
        assert_eq!(info.notes.len(), 1, "{:?}", info.notes);
        assert!(
            info.notes[0].contains("reading stopped"),
            "{:?}",
            info.notes
        );
    }

    #[test]
    fn missing_file_is_an_error_before_reading() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("ok");
        std::fs::write(&ok, "x\n").unwrap();
        let mut seen = 0;
        let err = read(
            &[ok, d.path().join("nope")],
            true,
            &mut |_: &[u8], _: &Origin<'_>| seen += 1,
        )
        .err()
        .unwrap();
        assert!(err.contains("cannot read") && err.contains("nope"), "{err}");
        assert_eq!(seen, 0);
        let err = read(
            &[d.path().to_path_buf()],
            true,
            &mut |_: &[u8], _: &Origin<'_>| (),
        )
        .err()
        .unwrap();
        assert!(err.contains("is a directory"), "{err}");
    }
}
