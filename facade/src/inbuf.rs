//! A read buffer for the fast path: bytes read but not yet used sit between `start` and
//! `end`; it grows on demand up to a limit and shrinks back after a large message.

/// A growable read buffer.
#[derive(Debug)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    base: usize,
}

impl InBuf {
    /// A buffer of `base` bytes (its resting size).
    pub(crate) fn new(base: usize) -> InBuf {
        InBuf {
            data: vec![0; base],
            start: 0,
            end: 0,
            base,
        }
    }

    /// The unread bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many bytes are unread.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when nothing is unread.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` unread bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space after the unread bytes, making some (moving them to the front, or growing
    /// up to `max` bytes in all) when there is none; empty when `max` is reached.
    pub(crate) fn room(&mut self, max: usize) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < max {
                let new = (self.data.len() * 2).clamp(self.base, max);
                self.data.resize(new, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Records `n` bytes written into [`InBuf::room`].
    pub(crate) fn advance(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.data.len());
    }

    /// Takes the unread bytes out, leaving the buffer empty.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let v = self.bytes().to_vec();
        self.start = 0;
        self.end = 0;
        v
    }

    /// Goes back to the resting size when it grew and what is unread fits.
    pub(crate) fn shrink(&mut self) {
        if self.data.len() > self.base && self.len() <= self.base {
            let mut v = vec![0; self.base];
            v[..self.len()].copy_from_slice(self.bytes());
            self.end = self.len();
            self.start = 0;
            self.data = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_compacts_and_shrinks() {
        let mut b = InBuf::new(4);
        b.room(16)[..4].copy_from_slice(b"abcd");
        b.advance(4);
        assert_eq!(b.room(16).len(), 4, "grew to 8");
        b.room(16)[..4].copy_from_slice(b"efgh");
        b.advance(4);
        b.consume(6);
        assert_eq!(b.bytes(), b"gh");
        assert_eq!(b.room(16).len(), 6, "compacted, not grown");
        b.shrink();
        assert_eq!(b.data.len(), 4);
        assert_eq!(b.bytes(), b"gh");
        b.consume(2);
        assert!(b.is_empty());
        let mut full = InBuf::new(2);
        full.advance(2);
        assert!(full.room(2).is_empty(), "at the limit");
    }
}
