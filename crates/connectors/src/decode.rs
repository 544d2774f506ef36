//! Decoding lines of CSV or JSON into record batches with arrow's decoders:
//! a whole block at once, and line by line only when the block fails, so that
//! one malformed line costs a slow path for its block but loses only itself.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::options::FileFormat;

/// The outcome of decoding a block of lines.
pub(crate) struct Decoded {
    /// The rows of the good lines, in line order (`None`: no good line).
    pub batch: Option<RecordBatch>,
    /// Lines that did not decode: index into the block, parser message.
    pub malformed: Vec<(usize, String)>,
}

pub(crate) struct LineDecoder {
    schema: SchemaRef,
    format: FileFormat,
    /// Reused buffer holding the block being decoded.
    block: Vec<u8>,
}

impl LineDecoder {
    pub(crate) fn new(schema: SchemaRef, format: FileFormat) -> Self {
        Self {
            schema,
            format,
            block: Vec::new(),
        }
    }

    /// Decodes `lines` (without line terminators, none empty) into one batch
    /// with exactly the decoder's schema.
    pub(crate) fn decode(&mut self, lines: &[&[u8]]) -> Result<Decoded, ArrowError> {
        if lines.is_empty() {
            return Ok(Decoded {
                batch: None,
                malformed: Vec::new(),
            });
        }
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        for line in lines {
            block.extend_from_slice(line);
            block.push(b'\n');
        }
        let fast = self.decode_block(&block, lines.len());
        self.block = block;
        if let Ok(batch) = fast {
            return Ok(Decoded {
                batch: Some(batch),
                malformed: Vec::new(),
            });
        }

        let mut good = Vec::with_capacity(lines.len());
        let mut malformed = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            let mut one = Vec::with_capacity(line.len() + 1);
            one.extend_from_slice(line);
            one.push(b'\n');
            match self.decode_block(&one, 1) {
                Ok(batch) => good.push(batch),
                Err(e) => malformed.push((index, parser_message(&e))),
            }
        }
        let batch = match good.len() {
            0 => None,
            1 => good.pop(),
            _ => Some(concat_batches(&self.schema, &good)?),
        };
        Ok(Decoded { batch, malformed })
    }

    /// Decodes a block that must hold exactly `rows` records.
    fn decode_block(&self, block: &[u8], rows: usize) -> Result<RecordBatch, ArrowError> {
        let batch = match self.format {
            FileFormat::Csv { delimiter, .. } => {
                let mut decoder = arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(rows + 1)
                    .build_decoder();
                feed(block, |b| decoder.decode(b))?;
                // An empty buffer tells the decoder the input has ended.
                decoder.decode(&[])?;
                decoder.flush()?
            }
            FileFormat::Json => {
                let mut decoder = arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(rows + 1)
                    .with_coerce_primitive(true)
                    .build_decoder()?;
                feed(block, |b| decoder.decode(b))?;
                decoder.flush()?
            }
        };
        let found = batch.as_ref().map_or(0, RecordBatch::num_rows);
        if found != rows {
            return Err(ArrowError::ParseError(if rows == 1 {
                format!("expected one record on the line, found {found}")
            } else {
                format!("expected {rows} records, found {found}")
            }));
        }
        let batch = batch.ok_or_else(|| ArrowError::ParseError("no records".into()))?;
        // Same fields either way; this makes the batch share the source's schema.
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
    }
}

/// The parser's message without arrow's variant prefix and without its line
/// number, which counts from the decoded block rather than from the file.
fn parser_message(e: &ArrowError) -> String {
    let message = match e {
        ArrowError::ParseError(m)
        | ArrowError::CsvError(m)
        | ArrowError::JsonError(m)
        | ArrowError::InvalidArgumentError(m) => m.clone(),
        other => other.to_string(),
    };
    // Each line is decoded alone, so these numbers are always 0 (row parsers)
    // and 1 (record splitter).
    message
        .replace(" at line 0", "")
        .replace(" for line 1,", ",")
}

/// Hands `block` to an Arrow decoder until it is consumed or the decoder
/// takes no more (its batch is full).
fn feed(
    block: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    let mut offset = 0;
    while offset < block.len() {
        let read = decode(&block[offset..])?;
        if read == 0 {
            break;
        }
        offset += read;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{rows, schema};

    fn decode(format: FileFormat, lines: &[&str]) -> Decoded {
        let schema = schema(&[("id", "int"), ("name", "text"), ("ts", "timestamp")]);
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        LineDecoder::new(schema, format).decode(&lines).unwrap()
    }

    const CSV: FileFormat = FileFormat::Csv {
        header: false,
        delimiter: b',',
    };

    #[test]
    fn csv_timestamps_in_several_spellings() {
        let decoded = decode(
            CSV,
            &[
                "1,a,2024-01-01 00:00:05",
                "2,\"b,c\",2024-01-01T00:00:05Z",
                "3,,2024-01-01 00:00:05.123",
            ],
        );
        assert!(decoded.malformed.is_empty());
        assert_eq!(
            rows(&decoded.batch.unwrap()),
            [
                "1|a|2024-01-01T00:00:05",
                "2|b,c|2024-01-01T00:00:05",
                "3|NULL|2024-01-01T00:00:05.123",
            ]
        );
    }

    #[test]
    fn bad_line_in_block_falls_back() {
        let decoded = decode(
            CSV,
            &["1,a,2024-01-01", "x,b,2024-01-01", "3,c", "4,d,2024-01-01"],
        );
        assert_eq!(
            rows(&decoded.batch.unwrap()),
            ["1|a|2024-01-01T00:00:00", "4|d|2024-01-01T00:00:00"]
        );
        let indexes: Vec<usize> = decoded.malformed.iter().map(|m| m.0).collect();
        assert_eq!(indexes, [1, 2]);
        assert!(
            !decoded.malformed[0].1.contains("line 0"),
            "{:?}",
            decoded.malformed
        );
        assert_eq!(
            decoded.malformed[1].1,
            "incorrect number of fields, expected 3 got 2"
        );
    }

    #[test]
    fn json_missing_extra_and_coerced_keys() {
        let decoded = decode(
            FileFormat::Json,
            &[
                r#"{"id": 1, "name": "a", "ts": "2024-01-01T00:00:05Z", "extra": [1]}"#,
                r#"{"id": 2}"#,
                r#"{"id": 3, "name": 42}"#,
                r#"{"id": 4"#,
                r#"{"id": 5}{"id": 6}"#,
            ],
        );
        assert_eq!(
            rows(&decoded.batch.unwrap()),
            ["1|a|2024-01-01T00:00:05", "2|NULL|NULL", "3|42|NULL"]
        );
        let indexes: Vec<usize> = decoded.malformed.iter().map(|m| m.0).collect();
        assert_eq!(indexes, [3, 4]);
        assert_eq!(
            decoded.malformed[1].1,
            "expected one record on the line, found 2"
        );
    }
}
