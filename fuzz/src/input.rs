//! Splits a fuzz input into the parameters a target needs and the bytes it feeds the code.
//!
//! Hand-written rather than `arbitrary`-derived: the stable replay test must turn a corpus file
//! into exactly the input the fuzzer saw, and it can depend on nothing but ringcast and std. The
//! layout is also simple enough to write seeds by hand: fixed-size parameters first (little
//! endian), the bytes under test last. A short input reads as zeros, so every byte string is a
//! valid input and no fuzzing time is spent on inputs that are thrown away.

/// Reads parameters off the front of a fuzz input.
pub struct Reader<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over the whole input.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { rest: data }
    }

    /// The next `N` bytes, zero-filled past the end of the input.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let taken = N.min(self.rest.len());
        out[..taken].copy_from_slice(&self.rest[..taken]);
        self.rest = &self.rest[taken..];
        out
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    /// The next two bytes, little endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }

    /// The next four bytes, little endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    /// Everything not read yet: the bytes under test.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}
