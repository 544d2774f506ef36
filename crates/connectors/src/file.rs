//! One split of a file source: a single file read line by line from a byte
//! offset, so that the offset is the split's resume position.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;

use crate::decode::LineDecoder;
use crate::error::{ConnectorError, Result};
use crate::options::{FileConfig, FileFormat, OnError};
use crate::{ReadOutcome, SplitReader};

/// Bytes asked of the file per read call.
const READ_CHUNK: usize = 64 * 1024;
/// Once this much is buffered, one call stops reading (and consuming) even
/// if fewer lines than asked were found, to bound memory and latency.
const READ_LIMIT: usize = 8 * 1024 * 1024;
/// Skipped at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// At most one warning about skipped lines per split per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// Reads one file of CSV or JSON lines.
///
/// Bytes are buffered past `position` until a newline completes a line; a
/// final line without newline is a row only when the file is not watched
/// (a watched file may still be completing it). Empty (all-whitespace)
/// lines are consumed and ignored. A watched file is assumed to be only
/// appended to: truncation or replacement is not detected.
pub(crate) struct FileSplit {
    name: String,
    file: File,
    watch: bool,
    on_error: OnError,
    decoder: LineDecoder,
    /// Bytes read from the file but not consumed; `buf[0]` is at `position`.
    buf: Vec<u8>,
    /// Number of `\n` in `buf`.
    newlines: usize,
    /// The last read found the end of the file.
    at_eof: bool,
    position: u64,
    /// 1-based number of the line starting at `position`.
    next_line: u64,
    /// The CSV header line has not been consumed yet.
    header_pending: bool,
    skipped: u64,
    last_warning: Option<Instant>,
    /// Lines skipped since the last warning, reported with the next one.
    unreported: u64,
    finished: bool,
}

/// The lines one call takes from the buffer.
struct Taken {
    /// Data lines: start and end in `buf` (terminator excluded), line number.
    lines: Vec<(usize, usize, u64)>,
    /// Bytes consumed, including empty and header lines.
    bytes: usize,
    newlines: usize,
    /// Lines consumed, including empty and header lines.
    line_count: u64,
    header_consumed: bool,
}

impl FileSplit {
    /// Opens `path` to resume at byte `position` (0: from the start).
    ///
    /// Resuming scans the bytes before `position` once, to number lines and
    /// to know whether the CSV header was already consumed.
    pub(crate) fn open(
        path: &Path,
        config: &FileConfig,
        schema: SchemaRef,
        position: u64,
    ) -> Result<Self> {
        let name = path.to_string_lossy().into_owned();
        let mut file = File::open(path).map_err(|e| ConnectorError::io("open", &name, e))?;
        let len = file
            .metadata()
            .map_err(|e| ConnectorError::io("open", &name, e))?
            .len();
        if position > len {
            return Err(ConnectorError::Resume(format!(
                "position {position} is past the end of \"{name}\" ({len} bytes)"
            )));
        }
        let prefix =
            scan_prefix(&mut file, position).map_err(|e| ConnectorError::io("read", &name, e))?;
        if position > 0 && position < len && prefix.last_byte != Some(b'\n') {
            return Err(ConnectorError::Resume(format!(
                "position {position} in \"{name}\" is not at the start of a line"
            )));
        }
        let header = matches!(config.format, FileFormat::Csv { header: true, .. });
        Ok(Self {
            name,
            file,
            watch: config.watch,
            on_error: config.on_error,
            decoder: LineDecoder::new(schema, config.format),
            buf: Vec::new(),
            newlines: 0,
            at_eof: false,
            position,
            next_line: prefix.newlines + 1,
            header_pending: header && !prefix.has_content,
            skipped: 0,
            last_warning: None,
            unreported: 0,
            finished: false,
        })
    }

    /// Reads until `buf` holds `want_lines` newlines, the read limit is
    /// reached, or the file ends.
    fn fill(&mut self, want_lines: usize) -> Result<()> {
        self.at_eof = false;
        while self.newlines < want_lines && (self.newlines == 0 || self.buf.len() < READ_LIMIT) {
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let read = self.file.read(&mut self.buf[old..]);
            self.buf.truncate(old + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => {
                    self.at_eof = true;
                    return Ok(());
                }
                Ok(_) => {
                    self.newlines += self.buf[old..].iter().filter(|&&b| b == b'\n').count();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnectorError::io("read", &self.name, e)),
            }
        }
        Ok(())
    }

    /// Takes up to `max_rows` data lines from the front of the buffer.
    fn take(&self, max_rows: usize) -> Taken {
        let mut taken = Taken {
            lines: Vec::new(),
            bytes: 0,
            newlines: 0,
            line_count: 0,
            header_consumed: false,
        };
        let mut header_pending = self.header_pending;
        let end_is_line = self.at_eof && !self.watch;
        while taken.lines.len() < max_rows && taken.bytes < self.buf.len() {
            let start = taken.bytes;
            let (mut end, next) = match self.buf[start..].iter().position(|&b| b == b'\n') {
                Some(i) => (start + i, start + i + 1),
                None if end_is_line => (self.buf.len(), self.buf.len()),
                None => break,
            };
            if next > end {
                taken.newlines += 1;
            }
            if end > start && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let line_number = self.next_line + taken.line_count;
            let bom = self.position == 0 && start == 0 && self.buf[..end].starts_with(UTF8_BOM);
            let start = if bom { UTF8_BOM.len() } else { start };
            if !self.buf[start..end].iter().all(u8::is_ascii_whitespace) {
                if header_pending {
                    header_pending = false;
                    taken.header_consumed = true;
                } else {
                    taken.lines.push((start, end, line_number));
                }
            }
            taken.bytes = next;
            taken.line_count += 1;
        }
        taken
    }

    fn warn_skipped(&mut self, line: u64, message: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_INTERVAL)
        {
            tracing::warn!(
                split = %self.name,
                line,
                error = %message,
                also_skipped = self.unreported,
                "skipping malformed line"
            );
            self.last_warning = Some(now);
            self.unreported = 0;
        } else {
            self.unreported += 1;
        }
    }
}

impl SplitReader for FileSplit {
    fn next_batch(&mut self, max_rows: usize) -> Result<ReadOutcome> {
        if self.finished {
            return Ok(ReadOutcome::Finished);
        }
        let max_rows = max_rows.max(1);
        let mut consumed_now = 0;
        // Loops only while whole blocks are skipped, empty or header lines.
        loop {
            self.fill(max_rows.saturating_add(usize::from(self.header_pending)))?;
            let taken = self.take(max_rows);
            if taken.bytes == 0 {
                if self.at_eof && !self.watch {
                    self.finished = true;
                    return Ok(ReadOutcome::Finished);
                }
                return Ok(ReadOutcome::Pending);
            }
            let lines: Vec<&[u8]> = taken
                .lines
                .iter()
                .map(|&(start, end, _)| &self.buf[start..end])
                .collect();
            let decoded =
                self.decoder
                    .decode(&lines)
                    .map_err(|source| ConnectorError::Internal {
                        split: self.name.clone(),
                        source,
                    })?;
            for (index, message) in decoded.malformed {
                let line = taken.lines[index].2;
                match self.on_error {
                    OnError::Fail => {
                        return Err(ConnectorError::Malformed {
                            path: self.name.clone(),
                            line,
                            message,
                        })
                    }
                    OnError::Skip => {
                        self.skipped += 1;
                        self.warn_skipped(line, &message);
                    }
                }
            }
            self.buf.drain(..taken.bytes);
            self.newlines -= taken.newlines;
            self.position += taken.bytes as u64;
            self.next_line += taken.line_count;
            self.header_pending &= !taken.header_consumed;
            if let Some(batch) = decoded.batch {
                return Ok(ReadOutcome::Batch(batch));
            }
            consumed_now += taken.bytes;
            if consumed_now >= READ_LIMIT {
                // Much input and no row: yield rather than hold the caller.
                return Ok(ReadOutcome::Pending);
            }
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped_rows(&self) -> u64 {
        self.skipped
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// What the bytes before a resume position tell.
struct Prefix {
    newlines: u64,
    /// Some line before the position is not empty.
    has_content: bool,
    last_byte: Option<u8>,
}

/// Reads the first `len` bytes, leaving the file positioned after them.
fn scan_prefix(file: &mut File, len: u64) -> std::io::Result<Prefix> {
    let mut prefix = Prefix {
        newlines: 0,
        has_content: false,
        last_byte: None,
    };
    let mut chunk = vec![0; READ_CHUNK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK);
        let read = match file.read(&mut chunk[..want]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let bytes = &chunk[..read];
        prefix.newlines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        prefix.has_content |= !bytes.iter().all(u8::is_ascii_whitespace);
        prefix.last_byte = bytes.last().copied();
        left -= read as u64;
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{drain, rows, schema, TempDir};

    fn config(path: &str, format: FileFormat, watch: bool, on_error: OnError) -> FileConfig {
        FileConfig {
            path: path.to_string(),
            format,
            watch,
            on_error,
        }
    }

    fn csv(header: bool) -> FileFormat {
        FileFormat::Csv {
            header,
            delimiter: b',',
        }
    }

    fn open(
        path: &str,
        format: FileFormat,
        watch: bool,
        on_error: OnError,
        position: u64,
    ) -> FileSplit {
        let schema = schema(&[("id", "bigint"), ("name", "text")]);
        FileSplit::open(
            Path::new(path),
            &config(path, format, watch, on_error),
            schema,
            position,
        )
        .unwrap()
    }

    #[test]
    fn csv_with_header_and_last_line_without_newline() {
        let dir = TempDir::new("header");
        let path = dir.write("a.csv", "id,name\r\n1,a\r\n\n2,b");
        let mut split = open(&path, csv(true), false, OnError::Fail, 0);
        assert_eq!(
            drain(&mut split, 100),
            (vec!["1|a".into(), "2|b".into()], true)
        );
        assert_eq!(split.position(), 18);
        assert!(matches!(
            split.next_batch(10).unwrap(),
            ReadOutcome::Finished
        ));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let dir = TempDir::new("bom");
        let path = dir.write("a.csv", "\u{feff}1,a\n");
        let mut split = open(&path, csv(false), false, OnError::Fail, 0);
        assert_eq!(drain(&mut split, 10), (vec!["1|a".into()], true));
    }

    #[test]
    fn csv_without_header_in_small_batches() {
        let dir = TempDir::new("noheader");
        let path = dir.write("a.csv", "1,a\n2,b\n3,c\n");
        let mut split = open(&path, csv(false), false, OnError::Fail, 0);
        let ReadOutcome::Batch(batch) = split.next_batch(2).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(rows(&batch), ["1|a", "2|b"]);
        assert_eq!(split.position(), 8);
        assert_eq!(drain(&mut split, 2), (vec!["3|c".into()], true));
    }

    #[test]
    fn malformed_line_in_block_is_skipped_and_counted() {
        let dir = TempDir::new("skip");
        let path = dir.write("a.csv", "1,a\n2,b\nnot-a-number,c\n3,c\n4\n5,e\n");
        let mut split = open(&path, csv(false), false, OnError::Skip, 0);
        let ReadOutcome::Batch(batch) = split.next_batch(100).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(rows(&batch), ["1|a", "2|b", "3|c", "5|e"]);
        assert_eq!(split.skipped_rows(), 2);
        assert!(matches!(
            split.next_batch(100).unwrap(),
            ReadOutcome::Finished
        ));
    }

    #[test]
    fn on_error_fail_names_file_and_line() {
        let dir = TempDir::new("fail");
        let path = dir.write("a.csv", "1,a\n\n2,b\nx,c\n");
        let mut split = open(&path, csv(false), false, OnError::Fail, 0);
        let err = split.next_batch(100).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("malformed line 4 in \"{path}\": ")),
            "{err}"
        );
        assert!(err.contains("'x'"), "{err}");
    }

    #[test]
    fn blocks_of_only_bad_lines_do_not_end_the_read() {
        let dir = TempDir::new("allbad");
        let path = dir.write("a.json", "{\"id\": \"x\"}\n{\n\n{\"id\": 7, \"more\": 1}\n");
        let mut split = open(&path, FileFormat::Json, false, OnError::Skip, 0);
        assert_eq!(drain(&mut split, 1), (vec!["7|NULL".into()], true));
        assert_eq!(split.skipped_rows(), 2);
    }

    #[test]
    fn watch_picks_up_appended_and_completed_lines() {
        let dir = TempDir::new("watch");
        let path = dir.write("a.csv", "1,a\n2,");
        let mut split = open(&path, csv(false), true, OnError::Fail, 0);
        assert_eq!(drain(&mut split, 10), (vec!["1|a".into()], false));
        assert_eq!(split.position(), 4);
        dir.append("a.csv", "b\n3,c");
        assert_eq!(drain(&mut split, 10), (vec!["2|b".into()], false));
        assert_eq!(split.position(), 8);
        dir.append("a.csv", "\n");
        assert_eq!(drain(&mut split, 10), (vec!["3|c".into()], false));
        assert_eq!(split.position(), 12);
        assert!(matches!(
            split.next_batch(10).unwrap(),
            ReadOutcome::Pending
        ));
    }

    #[test]
    fn resume_from_position_continues_lines_and_header() {
        let dir = TempDir::new("resume");
        let path = dir.write("a.csv", "id,name\n1,a\n2,b\n3,c\nbad\n");
        let mut first = open(&path, csv(true), false, OnError::Fail, 0);
        let ReadOutcome::Batch(batch) = first.next_batch(2).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(rows(&batch), ["1|a", "2|b"]);

        let mut resumed = open(&path, csv(true), false, OnError::Fail, first.position());
        let ReadOutcome::Batch(batch) = resumed.next_batch(1).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(rows(&batch), ["3|c"]);
        let err = resumed.next_batch(1).unwrap_err().to_string();
        assert!(err.starts_with("malformed line 5 in"), "{err}");

        // Only empty lines before the position: the header is still ahead.
        let path = dir.write("b.csv", "\n\nid,name\n1,a\n");
        let mut split = open(&path, csv(true), false, OnError::Fail, 1);
        assert_eq!(drain(&mut split, 10), (vec!["1|a".into()], true));
    }

    #[test]
    fn bad_resume_positions() {
        let dir = TempDir::new("badresume");
        let path = dir.write("a.csv", "1,a\n2,b\n");
        let schema = schema(&[("id", "bigint"), ("name", "text")]);
        let config = config(&path, csv(false), false, OnError::Fail);
        let err = FileSplit::open(Path::new(&path), &config, schema.clone(), 9)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("cannot resume source: position 9 is past the end of \"{path}\" (8 bytes)")
        );
        let err = FileSplit::open(Path::new(&path), &config, schema, 2)
            .err()
            .unwrap();
        assert!(err.to_string().ends_with("is not at the start of a line"));
    }
}
