//! A sidecar's answer head on the fast path, parsed as hyper's client parses it (httparse
//! with the same limits), with the same framing rules (RFC 9112 §6.3, as hyper applies them)
//! and the same keep-alive rule, so the fast path takes exactly the answers the general path
//! takes.

use std::mem::MaybeUninit;

/// Most header fields in a sidecar's answer (hyper's default).
pub(crate) const MAX_FIELDS: usize = 100;
/// Largest answer head (hyper's default read buffer limit).
pub(crate) const MAX_HEAD: usize = 8192 + 4096 * 100;

/// How the answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sidecar closes the connection.
    Close,
}

pub(crate) use crate::head_scan::Field;
use crate::head_scan::{digits, is_value, known, scan_fields, Known, Scan};

/// A parsed answer head.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status code.
    pub status: u16,
    /// The reason phrase (offsets), sent on as it came (hyper does the same).
    pub reason: (usize, usize),
    /// The head's length.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection may carry another request once the body was read.
    pub keep_alive: bool,
    /// The `Content-Length` announced (also for answers without a body, such as to HEAD).
    pub declared: Option<u64>,
}

/// Why an answer head is refused (the facade answers 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// httparse refused it.
    #[error("malformed answer head: {0}")]
    Malformed(httparse::Error),
    /// Larger than [`MAX_HEAD`].
    #[error("answer head too large")]
    TooLarge,
    /// A 101 to a request that asked for no upgrade.
    #[error("101 without an upgrade request")]
    UnaskedSwitch,
    /// `Transfer-Encoding` in an HTTP/1.0 answer.
    #[error("Transfer-Encoding in an HTTP/1.0 answer")]
    Http10Chunked,
    /// Invalid or conflicting `Content-Length`.
    #[error("invalid Content-Length")]
    BadLength,
}

/// What the buffer holds.
#[derive(Debug)]
pub(crate) enum Read {
    /// A final answer head.
    Answer(Answer),
    /// An interim (1xx) head of this many bytes, to skip.
    Interim(usize),
    /// Not complete yet.
    Partial,
}

/// True when `name` is `want` (ASCII case-insensitive).
pub(crate) fn name_is(name: &[u8], want: &[u8]) -> bool {
    name.len() == want.len() && name.eq_ignore_ascii_case(want)
}

/// True when the comma-separated `value` holds `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| name_is(t.trim_ascii(), token))
}

/// `Content-Length` values: every comma-separated one digits only and all equal (hyper's
/// `content_length_parse_all`).
fn length_of<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let mut got: Option<u64> = None;
    for v in values {
        for part in v.split(|&b| b == b',') {
            let n = digits(part.trim_ascii())?;
            match got {
                Some(g) if g != n => return None,
                _ => got = Some(n),
            }
        }
    }
    got
}

/// The status line as the fast form has it: `HTTP/1.x DDD reason CRLF`.
enum StatusLine {
    /// Status, reason, HTTP/1.1, where the fields start.
    Plain(u16, (usize, usize), bool, usize),
    /// A plain prefix of one.
    Partial,
    /// Anything else: httparse decides.
    Other,
}

fn status_line(buf: &[u8]) -> StatusLine {
    const P: &[u8] = b"HTTP/1.";
    let n = buf.len();
    let have = n.min(P.len());
    if buf[..have] != P[..have] {
        return StatusLine::Other;
    }
    if n < 13 {
        let ok = (n <= 7 || matches!(buf[7], b'0' | b'1'))
            && (n <= 8 || buf[8] == b' ')
            && buf.iter().skip(9).all(u8::is_ascii_digit);
        return if ok {
            StatusLine::Partial
        } else {
            StatusLine::Other
        };
    }
    let http11 = match buf[7] {
        b'1' => true,
        b'0' => false,
        _ => return StatusLine::Other,
    };
    if buf[8] != b' ' || !buf[9..12].iter().all(u8::is_ascii_digit) || buf[12] != b' ' {
        return StatusLine::Other;
    }
    let status = buf[9..12]
        .iter()
        .fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    let mut pos = 13;
    while pos < n && is_value(buf[pos]) {
        pos += 1;
    }
    if pos == n || (pos + 1 == n && buf[pos] == b'\r') {
        return StatusLine::Partial;
    }
    if buf[pos] != b'\r' || buf[pos + 1] != b'\n' {
        return StatusLine::Other;
    }
    StatusLine::Plain(status, (13, pos), http11, pos + 2)
}

/// Parses the answer head at the start of `buf` to a request with method `head_request`
/// (true for HEAD); the fields of a final answer go to `fields`. The plain form is read
/// directly; anything else is judged by httparse, as hyper's client judges it.
pub(crate) fn parse(
    buf: &[u8],
    head_request: bool,
    fields: &mut Vec<Field>,
) -> Result<Read, HeadError> {
    fields.clear();
    let (status, reason, http11, len) = match status_line(buf) {
        StatusLine::Plain(status, reason, http11, at) => {
            match scan_fields(buf, at, MAX_HEAD, MAX_FIELDS, fields) {
                Scan::Complete(len) => (status, reason, http11, len),
                Scan::Partial => return partial(buf),
                Scan::NotPlain => match by_httparse(buf, fields)? {
                    Some(h) => h,
                    None => return Ok(Read::Partial),
                },
            }
        }
        StatusLine::Partial => return partial(buf),
        StatusLine::Other => match by_httparse(buf, fields)? {
            Some(h) => h,
            None => return Ok(Read::Partial),
        },
    };
    if !(100..=999).contains(&status) {
        return Err(HeadError::Malformed(httparse::Error::Status));
    }
    match status {
        101 => return Err(HeadError::UnaskedSwitch),
        100..=199 => return Ok(Read::Interim(len)),
        _ => {}
    }
    let mut keep_alive = http11;
    let mut saw_close = false;
    let (mut te, mut chunked, mut cl) = (false, false, false);
    for f in fields.iter() {
        let v = &buf[f.value.0..f.value.1];
        match known(&buf[f.name.0..f.name.1]) {
            Known::Connection => {
                if saw_close || has_token(v, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(v, b"keep-alive");
                }
            }
            Known::TransferEncoding => {
                te = true;
                // Chunked when the last coding of the last field is `chunked` (hyper's rule).
                chunked = v
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| name_is(t.trim_ascii(), b"chunked"));
            }
            Known::ContentLength => cl = true,
            _ => {}
        }
    }
    // Invalid or conflicting lengths make the framing invalid whatever the method or status
    // (RFC 9112 §6.3; hyper's client lets them pass on answers without a body, and its
    // server then fails to write them); with Transfer-Encoding the length is ignored.
    let declared = if cl && !te {
        let values = fields
            .iter()
            .filter(|f| known(&buf[f.name.0..f.name.1]) == Known::ContentLength)
            .map(|f| &buf[f.value.0..f.value.1]);
        match length_of(values) {
            Some(n) => Some(n),
            None => return Err(HeadError::BadLength),
        }
    } else {
        None
    };
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if te {
        if !http11 {
            return Err(HeadError::Http10Chunked);
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok(Read::Answer(Answer {
        status,
        reason,
        len,
        framing,
        keep_alive: keep_alive && framing != Framing::Close,
        declared,
    }))
}

/// An incomplete head: wait for more, unless it already fills the limit.
fn partial(buf: &[u8]) -> Result<Read, HeadError> {
    if buf.len() >= MAX_HEAD {
        Err(HeadError::TooLarge)
    } else {
        Ok(Read::Partial)
    }
}

/// httparse's verdict (hyper's client parser, default configuration): the head's status,
/// reason, version and length with its fields, or None when incomplete.
#[allow(clippy::type_complexity)]
fn by_httparse(
    buf: &[u8],
    fields: &mut Vec<Field>,
) -> Result<Option<(u16, (usize, usize), bool, usize)>, HeadError> {
    fields.clear();
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    let base = buf.as_ptr() as usize;
    let off = |s: &[u8]| {
        let a = s.as_ptr() as usize - base;
        (a, a + s.len())
    };
    for h in res.headers.iter() {
        fields.push(Field {
            name: off(h.name.as_bytes()),
            value: off(h.value),
            end: 0,
        });
    }
    let reason = res.reason.map_or((len, len), |r| off(r.as_bytes()));
    Ok(Some((
        res.code.unwrap_or(0),
        reason,
        res.version == Some(1),
        len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8], head: bool) -> Result<Read, HeadError> {
        super::parse(s, head, &mut Vec::new())
    }

    fn answer(s: &[u8], head: bool) -> Answer {
        match parse(s, head).unwrap() {
            Read::Answer(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc9112_as_hyper_does() {
        let a = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
        assert_eq!(
            (a.status, a.framing, a.keep_alive),
            (200, Framing::Length(2), true)
        );
        let a = answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(a.framing, Framing::Chunked, "TE wins over CL");
        let a = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((a.framing, a.keep_alive), (Framing::Close, false));
        let a = answer(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((a.framing, a.keep_alive), (Framing::Close, false));
        let a = answer(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!(a.framing, Framing::Empty);
        let a = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!(a.framing, Framing::Empty, "answer to HEAD");
        let a = answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!(a.framing, Framing::Length(5), "equal duplicates, as hyper");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        ] {
            assert_eq!(parse(bad, false).unwrap_err(), HeadError::BadLength);
        }
        assert_eq!(
            parse(
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .unwrap_err(),
            HeadError::Http10Chunked
        );
        assert_eq!(
            parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).unwrap_err(),
            HeadError::UnaskedSwitch
        );
    }

    #[test]
    fn keep_alive_as_hyper_decides() {
        let ka = |s: &[u8]| answer(s, false).keep_alive;
        assert!(ka(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ka(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ka(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn interim_partial_and_malformed() {
        assert!(matches!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", false),
            Ok(Read::Interim(25))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nA: b", false),
            Ok(Read::Partial)
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nA b\r\n\r\n", false),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", false),
            Err(HeadError::Malformed(_))
        ));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many, false), Err(HeadError::Malformed(_))));
        let a = answer(
            b"HTTP/1.1 299 Custom Thing\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        let s = b"HTTP/1.1 299 Custom Thing\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(&s[a.reason.0..a.reason.1], b"Custom Thing");
    }
}
