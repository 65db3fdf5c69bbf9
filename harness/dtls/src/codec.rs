//! Byte codec: a [`Reader`] over untrusted input that never panics and rejects leftover bytes,
//! length-prefixed vector helpers, and the [`Codec`] trait every wire type implements.

/// Parsing failed. Every variant maps to a `decode_error` alert when it happens in a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message truncated")]
    Truncated,
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// Cursor over a byte slice. Every accessor is bounds-checked and returns
/// [`CodecError::Truncated`] instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// Consume everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = self.rest();
        self.pos = self.buf.len();
        out
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u24(&mut self) -> Result<u32, CodecError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub fn u48(&mut self) -> Result<u64, CodecError> {
        let [a, b, c, d, e, f] = self.array()?;
        Ok(u64::from_be_bytes([0, 0, a, b, c, d, e, f]))
    }

    /// Sub-reader over an `u8`-length-prefixed vector.
    pub fn sub_u8(&mut self) -> Result<Reader<'a>, CodecError> {
        let n = self.u8()? as usize;
        Ok(Reader::new(self.take(n)?))
    }

    pub fn sub_u16(&mut self) -> Result<Reader<'a>, CodecError> {
        let n = self.u16()? as usize;
        Ok(Reader::new(self.take(n)?))
    }

    pub fn sub_u24(&mut self) -> Result<Reader<'a>, CodecError> {
        let n = self.u24()? as usize;
        Ok(Reader::new(self.take(n)?))
    }

    pub fn vec_u8(&mut self) -> Result<Vec<u8>, CodecError> {
        Ok(self.sub_u8()?.take_rest().to_vec())
    }

    pub fn vec_u16(&mut self) -> Result<Vec<u8>, CodecError> {
        Ok(self.sub_u16()?.take_rest().to_vec())
    }

    /// Fails with [`CodecError::TrailingBytes`] if anything is left: a message must be
    /// consumed exactly (RFC 5246 §7.4: lengths must be consistent).
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes(self.left()))
        }
    }
}

/// A wire type with a parse/emit pair.
pub trait Codec: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError>;

    fn get_encoding(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Parse from a complete buffer, rejecting leftover bytes.
    fn read_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

pub fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Append `body` with an `u8` length prefix; the caller guarantees `body.len() <= 255`
/// (values we emit are bounded by construction, lengths are clamped otherwise).
pub fn put_vec_u8(out: &mut Vec<u8>, body: &[u8]) {
    let n = body.len().min(u8::MAX as usize);
    out.push(n as u8);
    out.extend_from_slice(&body[..n]);
}

pub fn put_vec_u16(out: &mut Vec<u8>, body: &[u8]) {
    let n = body.len().min(u16::MAX as usize);
    put_u16(out, n as u16);
    out.extend_from_slice(&body[..n]);
}

pub fn put_vec_u24(out: &mut Vec<u8>, body: &[u8]) {
    let n = body.len().min(0xff_ffff);
    put_u24(out, n as u32);
    out.extend_from_slice(&body[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_bounds_and_leftovers() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.finish(), Err(CodecError::TrailingBytes(3)));
        assert_eq!(r.u24().unwrap(), 0x040506);
        assert!(r.finish().is_ok());
        assert_eq!(r.u8(), Err(CodecError::Truncated));
        let mut r = Reader::new(&[3, 1, 2]);
        assert_eq!(r.vec_u8(), Err(CodecError::Truncated));
        let mut r = Reader::new(&[0xff; 4]);
        assert_eq!(r.take(usize::MAX), Err(CodecError::Truncated));
    }

    #[test]
    fn integers_round_trip() {
        let mut out = Vec::new();
        put_u24(&mut out, 0x0a0b0c);
        put_u48(&mut out, 0x0000_1122_3344_5566);
        assert_eq!(out, [0x0a, 0x0b, 0x0c, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
        let mut r = Reader::new(&out);
        assert_eq!(r.u24().unwrap(), 0x0a0b0c);
        assert_eq!(r.u48().unwrap(), 0x1122_3344_5566);
    }
}
