//! A small binary encoding for the records operators and actors keep in
//! their state tables: fixed-width big-endian integers and length-prefixed
//! bytes, read back with errors rather than panics on a short or bad record.

use crate::{Error, Result};

/// Builds one record.
#[derive(Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).i64(v),
            None => self.u8(0),
        }
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.bytes.extend_from_slice(v);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Reads one record; every read fails cleanly past its end.
pub struct Decoder<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// `what` names the record in errors.
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, rest: bytes }
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::Internal(format!("stored {} does not decode: {reason}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.corrupt("record too short"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| self.corrupt("record too short"))
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.corrupt(&format!("flag byte {b}"))),
        }
    }

    pub fn opt_i64(&mut self) -> Result<Option<i64>> {
        Ok(if self.bool()? {
            Some(self.i64()?)
        } else {
            None
        })
    }

    /// A count of items that follow, each at least one byte long.
    pub fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        if n > self.rest.len() as u64 {
            return Err(self.corrupt(&format!("{n} items in {} bytes", self.rest.len())));
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| self.corrupt("length overflows"))?;
        self.take(n)
    }

    /// Fails unless the whole record was read.
    pub fn end(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(&format!("{} bytes left over", self.rest.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_short_ones_fail() {
        let bytes = Encoder::new()
            .u32(7)
            .opt_i64(Some(-3))
            .opt_i64(None)
            .bytes(b"abc")
            .u64(9)
            .finish();
        let mut d = Decoder::new("test record", &bytes);
        assert_eq!(d.u32().unwrap(), 7);
        assert_eq!(d.opt_i64().unwrap(), Some(-3));
        assert_eq!(d.opt_i64().unwrap(), None);
        assert_eq!(d.bytes().unwrap(), b"abc");
        assert_eq!(d.u64().unwrap(), 9);
        d.end().unwrap();
        let mut short = Decoder::new("test record", &bytes[..6]);
        short.u32().unwrap();
        assert!(short.opt_i64().is_err());
        let mut huge = Decoder::new("test record", &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert!(huge.len().is_err());
    }
}
