//! The chunked transfer coding (RFC 9112 §7.1): a decoder for sidecars' answers with hyper's
//! rules and limits (CRLF everywhere, extensions ignored but bounded, trailers read and
//! dropped), and the encoder the fast path answers clients with.

/// Most chunk-extension bytes accepted over a whole body (hyper's limit).
const EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// Most trailer bytes accepted (hyper's limit).
const TRAILER_LIMIT: usize = 16 * 1024;
/// Most trailer fields accepted (hyper's default header count).
const TRAILER_FIELDS: usize = 100;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    /// A malformed size line, chunk end or trailer.
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
    /// A chunk size beyond u64.
    #[error("chunk size overflow")]
    Overflow,
    /// Extensions or trailers over the limits.
    #[error("chunk extensions or trailers over the limit")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    End,
}

/// Decodes one chunked body, fed in pieces.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    size: u64,
    extensions: u64,
    trailer_bytes: usize,
    trailer_fields: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }
}

impl Decoder {
    /// True once the last chunk and the trailers were read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Decodes from `input`, appending the data to `out`; returns how many bytes of `input`
    /// belong to the body (all of them unless the body ended inside `input`).
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::End {
            if self.state == State::Body {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[i..i + n]);
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::BodyCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = self.step(b)?;
        }
        Ok(i)
    }

    fn digit(&mut self, b: u8) -> Result<bool, ChunkError> {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Ok(false),
        };
        self.size = self
            .size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or(ChunkError::Overflow)?;
        Ok(true)
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_LIMIT {
            return Err(ChunkError::TooLarge);
        }
        Ok(())
    }

    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        use State::*;
        Ok(match self.state {
            Start => {
                self.size = 0;
                if !self.digit(b)? {
                    return Err(ChunkError::Malformed("missing chunk size"));
                }
                Size
            }
            Size => {
                if self.digit(b)? {
                    Size
                } else {
                    match b {
                        b'\t' | b' ' => SizeLws,
                        b';' => Extension,
                        b'\r' => SizeLf,
                        _ => return Err(ChunkError::Malformed("invalid chunk size")),
                    }
                }
            }
            SizeLws => match b {
                b'\t' | b' ' => SizeLws,
                b';' => Extension,
                b'\r' => SizeLf,
                _ => return Err(ChunkError::Malformed("invalid space after a chunk size")),
            },
            Extension => match b {
                b'\r' => SizeLf,
                b'\n' => return Err(ChunkError::Malformed("newline in a chunk extension")),
                _ => {
                    self.extensions += 1;
                    if self.extensions >= EXTENSIONS_LIMIT {
                        return Err(ChunkError::TooLarge);
                    }
                    Extension
                }
            },
            SizeLf => match b {
                b'\n' if self.size == 0 => EndCr,
                b'\n' => Body,
                _ => return Err(ChunkError::Malformed("chunk size line without LF")),
            },
            Body => unreachable!("handled by decode"),
            BodyCr => match b {
                b'\r' => BodyLf,
                _ => return Err(ChunkError::Malformed("chunk data without CR")),
            },
            BodyLf => match b {
                b'\n' => Start,
                _ => return Err(ChunkError::Malformed("chunk data without LF")),
            },
            Trailer => {
                self.trailer_byte()?;
                if b == b'\r' {
                    TrailerLf
                } else {
                    Trailer
                }
            }
            TrailerLf => match b {
                b'\n' => {
                    self.trailer_fields += 1;
                    if self.trailer_fields > TRAILER_FIELDS {
                        return Err(ChunkError::TooLarge);
                    }
                    self.trailer_byte()?;
                    EndCr
                }
                _ => return Err(ChunkError::Malformed("trailer without LF")),
            },
            EndCr => {
                if b == b'\r' {
                    EndLf
                } else {
                    self.trailer_byte()?;
                    Trailer
                }
            }
            EndLf => match b {
                b'\n' => End,
                _ => return Err(ChunkError::Malformed("last chunk without LF")),
            },
            End => End,
        })
    }
}

/// Room kept in front of chunk data for its size line (16 hex digits and CRLF).
pub(crate) const SIZE_ROOM: usize = 18;

/// Frames the data after a [`SIZE_ROOM`]-byte placeholder at `at` as one chunk starting
/// at `at` (size line, data, CRLF), moving the data as needed. No data gives no chunk (a
/// zero-size chunk would end the body).
pub(crate) fn frame_at(buf: &mut Vec<u8>, at: usize) {
    let len = buf.len() - at - SIZE_ROOM;
    if len == 0 {
        buf.truncate(at);
        return;
    }
    let mut digits = [0u8; SIZE_ROOM];
    let hex = format_hex(len as u64, &mut digits);
    let start = at + SIZE_ROOM - hex.len() - 2;
    buf[start..start + hex.len()].copy_from_slice(hex);
    buf[at + SIZE_ROOM - 2..at + SIZE_ROOM].copy_from_slice(b"\r\n");
    if start > at {
        buf.copy_within(start.., at);
        buf.truncate(buf.len() - (start - at));
    }
    buf.extend_from_slice(b"\r\n");
}

/// `n` in lowercase hex, into `out`.
fn format_hex(mut n: u64, out: &mut [u8; SIZE_ROOM]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

/// The end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut used = 0;
        for c in input.chunks(piece) {
            let n = d.decode(c, &mut out)?;
            used += n;
            if n < c.len() || d.is_done() {
                break;
            }
        }
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_in_any_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1;x\r\n, world\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (out, used, done) = decode_all(body, piece).unwrap();
            assert_eq!(out, b"hello, world0123456789", "{piece}");
            assert!(done);
            assert_eq!(&body[used..], b"NEXT", "{piece}");
        }
        let (out, _, done) = decode_all(b"0\r\n\r\n", 1).unwrap();
        assert!(out.is_empty() && done);
    }

    #[test]
    fn refuses_what_hyper_refuses() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 5\r\nhello\r\n",
            b"5;a\nb\r\n",
            b"0\r\n\r\r",
            b"0\r\nX: 1\rY\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            assert!(
                decode_all(bad, 100).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', 20_000));
        assert_eq!(
            decode_all(&long_ext, 1000).unwrap_err(),
            ChunkError::TooLarge
        );
        let mut long_trailer = b"0\r\n".to_vec();
        for _ in 0..200 {
            long_trailer.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(
            decode_all(&long_trailer, 1000).unwrap_err(),
            ChunkError::TooLarge
        );
    }

    #[test]
    fn frames_after_a_prefix() {
        let mut b = b"HEAD".to_vec();
        b.extend_from_slice(&[0u8; SIZE_ROOM]);
        b.extend_from_slice(&[b'x'; 300]);
        frame_at(&mut b, 4);
        assert_eq!(&b[..9], b"HEAD12c\r\n");
        assert!(b.ends_with(b"x\r\n"));
        assert_eq!(b.len(), 4 + 5 + 300 + 2);
        let (out, _, _) = decode_all(&[&b[4..], LAST_CHUNK].concat(), 9).unwrap();
        assert_eq!(out.len(), 300);
        let mut empty = b"HEAD".to_vec();
        empty.extend_from_slice(&[0u8; SIZE_ROOM]);
        frame_at(&mut empty, 4);
        assert_eq!(empty, b"HEAD");
    }
}
