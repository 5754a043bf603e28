//! A small canonical binary encoding: little-endian integers, `f32` as raw
//! bits, length-prefixed vectors. Used for checkpoint payloads and for the
//! state digest, so equal states always encode to equal bytes.
//!
//! The decoder never trusts a length field: it checks a declared length
//! against the bytes that are really left before allocating anything.
//!
//! ```
//! use crashpoint::codec::{Decoder, Encoder};
//! let mut enc = Encoder::default();
//! enc.u64(7);
//! enc.f32s(&[1.5, -0.0]);
//! let bytes = enc.into_bytes();
//! let mut dec = Decoder::new(&bytes);
//! assert_eq!(dec.u64("n").unwrap(), 7);
//! assert_eq!(dec.f32s("v").unwrap(), vec![1.5, -0.0]);
//! assert!(dec.finish().is_ok());
//! ```

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside the named field.
    #[error("truncated: the data ends inside field `{0}`")]
    Truncated(&'static str),
    /// A length field claims more elements than bytes remain.
    #[error("field `{field}` declares {declared} elements but only {available} bytes remain")]
    BadLength {
        /// The field whose length is wrong.
        field: &'static str,
        /// The declared element count.
        declared: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// Bytes remain after the last field.
    #[error("{0} unexpected bytes after the last field")]
    Trailing(usize),
    /// The fields decode but do not fit together.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// The bytes written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Consumes the encoder, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// Raw bytes, no length prefix.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// A `u32`, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }
    /// A `u64`, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }
    /// A `u128`, little-endian.
    pub fn u128(&mut self, v: u128) {
        self.raw(&v.to_le_bytes());
    }
    /// An `f32` by its bits.
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }
    /// A length-prefixed slice of `f32`.
    pub fn f32s(&mut self, v: &[f32]) {
        self.u64(v.len() as u64);
        for x in v {
            self.f32(*x);
        }
    }
    /// A length-prefixed slice of `u32`.
    pub fn u32s(&mut self, v: &[u32]) {
        self.u64(v.len() as u64);
        for x in v {
            self.u32(*x);
        }
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.raw(s.as_bytes());
    }
}

/// Reads canonical encodings back, field by field.
#[derive(Debug)]
pub struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { rest: bytes }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    /// A fixed-size byte array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    /// A `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    /// A `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    /// A `u128`.
    pub fn u128(&mut self, field: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array(field)?))
    }
    /// An `f32`.
    pub fn f32(&mut self, field: &'static str) -> Result<f32, DecodeError> {
        Ok(f32::from_bits(self.u32(field)?))
    }
    fn len(&mut self, field: &'static str, elem: usize) -> Result<usize, DecodeError> {
        let declared = self.u64(field)?;
        let available = self.rest.len();
        match usize::try_from(declared) {
            Ok(n) if n.checked_mul(elem).is_some_and(|b| b <= available) => Ok(n),
            _ => Err(DecodeError::BadLength {
                field,
                declared,
                available,
            }),
        }
    }
    /// A length-prefixed vector of `f32`.
    pub fn f32s(&mut self, field: &'static str) -> Result<Vec<f32>, DecodeError> {
        let n = self.len(field, 4)?;
        (0..n).map(|_| self.f32(field)).collect()
    }
    /// A length-prefixed vector of `u32`.
    pub fn u32s(&mut self, field: &'static str) -> Result<Vec<u32>, DecodeError> {
        let n = self.len(field, 4)?;
        (0..n).map(|_| self.u32(field)).collect()
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let n = self.len(field, 1)?;
        let bytes = self.take(n, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
    }
}
