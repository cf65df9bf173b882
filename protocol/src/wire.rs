//! Primitive field encodings: big-endian integers, length-prefixed text, lists, and the body reader.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// Reads the fields of one message body, in order, refusing anything out of bounds.
pub(crate) struct Reader {
    kind: &'static str,
    body: Bytes,
}

impl Reader {
    pub(crate) fn new(kind: &'static str, body: Bytes) -> Self {
        Self { kind, body }
    }

    fn need(&self, field: &'static str, n: usize) -> Result<(), WireError> {
        if self.body.remaining() < n {
            return Err(WireError::FieldTruncated {
                kind: self.kind,
                field,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        self.need(field, 1)?;
        Ok(self.body.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.need(field, 2)?;
        Ok(self.body.get_u16())
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, WireError> {
        self.need(field, 2)?;
        Ok(self.body.get_i16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.need(field, 4)?;
        Ok(self.body.get_u32())
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        self.need(field, 4)?;
        Ok(self.body.get_i32())
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.need(field, 8)?;
        Ok(self.body.get_u64())
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(field, other.into())),
        }
    }

    /// A `u16` length, then that many bytes of UTF-8, at most `max` bytes.
    pub(crate) fn string(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(self.too_long(field, len, max));
        }
        self.need(field, len)?;
        let raw = self.body.split_to(len);
        String::from_utf8(raw.to_vec()).map_err(|_| WireError::InvalidUtf8 {
            kind: self.kind,
            field,
        })
    }

    /// A `u16` element count, checked against `max`, before the elements are read.
    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, WireError> {
        let n = usize::from(self.u16(field)?);
        if n > max {
            return Err(self.too_long(field, n, max));
        }
        Ok(n)
    }

    /// Everything left in the body as UTF-8 text, at most `max` bytes (the frame limit already
    /// bounds it; this names the field when it does not hold).
    pub(crate) fn text_rest(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<String, WireError> {
        let raw = self.body.split_off(0);
        if raw.len() > max {
            return Err(self.too_long(field, raw.len(), max));
        }
        String::from_utf8(raw.to_vec()).map_err(|_| WireError::InvalidUtf8 {
            kind: self.kind,
            field,
        })
    }

    /// Exactly `N` bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        self.need(field, N)?;
        let mut out = [0u8; N];
        self.body.copy_to_slice(&mut out);
        Ok(out)
    }

    /// Everything left in the body, shared with the received buffer (no copy).
    pub(crate) fn rest(&mut self) -> Bytes {
        self.body.split_off(0)
    }

    /// Whether the body has been read to its end.
    pub(crate) fn at_end(&self) -> bool {
        self.body.is_empty()
    }

    /// Ends the body: any byte left over is an error.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                kind: self.kind,
                extra: self.body.len(),
            })
        }
    }

    pub(crate) fn invalid(&self, field: &'static str, value: u64) -> WireError {
        WireError::InvalidValue {
            kind: self.kind,
            field,
            value,
        }
    }

    pub(crate) fn invalid_file_name(&self, field: &'static str) -> WireError {
        WireError::InvalidFileName {
            kind: self.kind,
            field,
        }
    }

    fn too_long(&self, field: &'static str, len: usize, max: usize) -> WireError {
        WireError::FieldTooLong {
            kind: self.kind,
            field,
            len,
            max,
        }
    }
}

/// Writes the fields of one message body, refusing values the reader would refuse.
pub(crate) struct Writer<'a> {
    kind: &'static str,
    out: &'a mut BytesMut,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(kind: &'static str, out: &'a mut BytesMut) -> Self {
        Self { kind, out }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.put_u8(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.put_u16(v);
    }

    pub(crate) fn i16(&mut self, v: i16) {
        self.out.put_i16(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.put_u32(v);
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.out.put_i32(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.put_u64(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.out.put_u8(u8::from(v));
    }

    pub(crate) fn string(
        &mut self,
        field: &'static str,
        v: &str,
        max: usize,
    ) -> Result<(), WireError> {
        let len = self.check_len(field, v.len(), max)?;
        self.out.put_u16(len);
        self.out.put_slice(v.as_bytes());
        Ok(())
    }

    pub(crate) fn count(
        &mut self,
        field: &'static str,
        n: usize,
        max: usize,
    ) -> Result<(), WireError> {
        let n = self.check_len(field, n, max)?;
        self.out.put_u16(n);
        Ok(())
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.out.put_slice(v);
    }

    fn check_len(&self, field: &'static str, len: usize, max: usize) -> Result<u16, WireError> {
        let too_long = WireError::FieldTooLong {
            kind: self.kind,
            field,
            len,
            max,
        };
        if len > max {
            return Err(too_long);
        }
        u16::try_from(len).map_err(|_| too_long)
    }

    pub(crate) fn invalid(&self, field: &'static str, value: u64) -> WireError {
        WireError::InvalidValue {
            kind: self.kind,
            field,
            value,
        }
    }
}
