//! The small part of MessagePack that vLLM's events use: a zero-copy reader over a byte slice
//! and an appending writer. Written for this crate so decoding allocates only what it keeps.

use crate::error::KvEventsError;

/// One decoded scalar or container header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Item<'a> {
    Nil,
    Bool(bool),
    /// Any non-negative integer (u64 range: hashes above 2^63 stay exact).
    Uint(u64),
    /// A negative integer.
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    /// An array header: this many items follow.
    Array(usize),
    /// A map header: this many key/value pairs follow.
    Map(usize),
    /// An extension type (skipped by callers).
    Ext,
}

/// A cursor over msgpack bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(what: &str) -> KvEventsError {
    KvEventsError::Decode(what.to_string())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The read position.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Moves the read position back to one returned by [`Reader::position`].
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], KvEventsError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("truncated msgpack"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn be(&mut self, n: usize) -> Result<u64, KvEventsError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, KvEventsError> {
        usize::try_from(self.be(n)?).map_err(|_| bad("length overflows usize"))
    }

    fn str(&mut self, n: usize) -> Result<Item<'a>, KvEventsError> {
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(Item::Str)
            .map_err(|_| bad("string is not UTF-8"))
    }

    /// Reads the next item (a container yields only its header).
    pub(crate) fn next(&mut self) -> Result<Item<'a>, KvEventsError> {
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Item::Uint(u64::from(m)),
            0x80..=0x8f => Item::Map(usize::from(m & 0x0f)),
            0x90..=0x9f => Item::Array(usize::from(m & 0x0f)),
            0xa0..=0xbf => return self.str(usize::from(m & 0x1f)),
            0xc0 => Item::Nil,
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4 => {
                let n = self.len(1)?;
                Item::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.len(2)?;
                Item::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.len(4)?;
                Item::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (m - 0xc7))?;
                self.take(n + 1)?;
                Item::Ext
            }
            0xca => Item::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Item::Float(f64::from_bits(self.be(8)?)),
            0xcc => Item::Uint(self.be(1)?),
            0xcd => Item::Uint(self.be(2)?),
            0xce => Item::Uint(self.be(4)?),
            0xcf => Item::Uint(self.be(8)?),
            0xd0 => Item::Int(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => Item::Int(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Item::Int(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Item::Int(self.be(8)? as i64),
            0xd4..=0xd8 => {
                self.take(1 + (1 << (m - 0xd4)))?;
                Item::Ext
            }
            0xd9 => {
                let n = self.len(1)?;
                return self.str(n);
            }
            0xda => {
                let n = self.len(2)?;
                return self.str(n);
            }
            0xdb => {
                let n = self.len(4)?;
                return self.str(n);
            }
            0xdc => Item::Array(self.len(2)?),
            0xdd => Item::Array(self.len(4)?),
            0xde => Item::Map(self.len(2)?),
            0xdf => Item::Map(self.len(4)?),
            0xe0..=0xff => Item::Int(i64::from(m as i8)),
            0xc1 => return Err(bad("reserved msgpack marker 0xc1")),
        })
        .map(|item| match item {
            // Non-negative signed encodings read as unsigned, so callers see one form.
            Item::Int(v) if v >= 0 => Item::Uint(v as u64),
            other => other,
        })
    }

    /// Skips one whole value, containers included.
    pub(crate) fn skip(&mut self) -> Result<(), KvEventsError> {
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            match self.next()? {
                Item::Array(n) => pending = pending.saturating_add(n),
                Item::Map(n) => pending = pending.saturating_add(n.saturating_mul(2)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads an array header.
    pub(crate) fn array(&mut self) -> Result<usize, KvEventsError> {
        match self.next()? {
            Item::Array(n) => Ok(n),
            other => Err(bad(&format!("expected an array, got {other:?}"))),
        }
    }

    /// Reads a string.
    pub(crate) fn string(&mut self) -> Result<&'a str, KvEventsError> {
        match self.next()? {
            Item::Str(s) => Ok(s),
            other => Err(bad(&format!("expected a string, got {other:?}"))),
        }
    }

    /// Reads an unsigned integer.
    pub(crate) fn uint(&mut self) -> Result<u64, KvEventsError> {
        match self.next()? {
            Item::Uint(v) => Ok(v),
            other => Err(bad(&format!("expected an unsigned integer, got {other:?}"))),
        }
    }

    /// Reads a nil (returns true) or leaves the cursor where it was (returns false).
    pub(crate) fn nil(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

/// Appends msgpack to a byte vector (shortest encodings, as Python's msgspec writes them).
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn nil(&mut self) {
        self.0.push(0xc0);
    }

    pub(crate) fn uint(&mut self, v: u64) {
        let out = &mut *self.0;
        if v < 0x80 {
            out.push(v as u8);
        } else if v <= 0xff {
            out.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub(crate) fn int(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.0.push(v as i8 as u8);
        } else if v >= i64::from(i8::MIN) {
            self.0.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= i64::from(i16::MIN) {
            self.0.push(0xd1);
            self.0.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            self.0.push(0xd2);
            self.0.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.0.push(0xd3);
            self.0.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub(crate) fn float(&mut self, v: f64) {
        self.0.push(0xcb);
        self.0.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    fn header(&mut self, len: usize, fix: u8, fix_max: usize, m8: Option<u8>, m16: u8, m32: u8) {
        let out = &mut *self.0;
        if len <= fix_max {
            out.push(fix | len as u8);
        } else if let (Some(m), true) = (m8, len <= 0xff) {
            out.extend_from_slice(&[m, len as u8]);
        } else if len <= 0xffff {
            out.push(m16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m32);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.header(s.len(), 0xa0, 31, Some(0xd9), 0xda, 0xdb);
        self.0.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn bin(&mut self, b: &[u8]) {
        if b.len() <= 0xff {
            self.0.extend_from_slice(&[0xc4, b.len() as u8]);
        } else if b.len() <= 0xffff {
            self.0.push(0xc5);
            self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        } else {
            self.0.push(0xc6);
            self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        }
        self.0.extend_from_slice(b);
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.header(len, 0x90, 15, None, 0xdc, 0xdd);
    }

    pub(crate) fn map(&mut self, len: usize) {
        self.header(len, 0x80, 15, None, 0xde, 0xdf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsigned values at every msgpack width boundary.
    const UINTS: [u64; 9] = [
        0,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64 + 1,
        u64::MAX,
    ];
    /// Negative values at every msgpack width boundary.
    const INTS: [i64; 8] = [-1, -32, -33, -128, -129, -32_768, -40_000, i64::MIN];

    #[test]
    fn round_trips_every_width() {
        let mut buf = Vec::new();
        let mut w = Writer(&mut buf);
        for v in UINTS {
            w.uint(v);
        }
        for v in INTS {
            w.int(v);
        }
        w.str(&"x".repeat(40));
        w.array(20);
        let mut r = Reader::new(&buf);
        for v in UINTS {
            assert_eq!(r.next().unwrap(), Item::Uint(v));
        }
        for v in INTS {
            assert_eq!(r.next().unwrap(), Item::Int(v));
        }
        assert_eq!(r.string().unwrap().len(), 40);
        assert_eq!(r.array().unwrap(), 20);
        assert_eq!(r.remaining(), 0);
        assert!(Reader::new(&[0xcf, 1]).next().is_err(), "truncated");
    }
}
