//! A strict parser for request heads, for the fast path.
//!
//! It accepts only the plainest HTTP/1.1: `METHOD SP origin-form SP HTTP/1.1 CRLF`, then
//! `name: value CRLF` lines with token names (no space before the colon), values of visible
//! ASCII, spaces and tabs, and a final CRLF. Everything else — a bare CR or LF, obs-fold, a
//! control or non-ASCII byte, another version, an absolute or asterisk target, leading empty
//! lines, a head over the size or count limits — is [`Parsed::NotMine`]: the connection then
//! goes to the general (hyper) path, which parses the same bytes and answers exactly as the
//! facade always has (400, 431, ...). The fast path never answers a malformed head itself,
//! so it cannot answer one differently.

pub(crate) use crate::head_scan::Field;
use crate::head_scan::{is_target, is_tchar, scan_fields, Scan};

/// A complete head (offsets from the head's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The method token.
    pub method: (usize, usize),
    /// The request target (origin form: starts with `/`).
    pub target: (usize, usize),
    /// The head's length, final CRLF included: where the body starts.
    pub len: usize,
}

/// What a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A complete, plain head; its fields are in the `fields` vector given to [`parse`].
    Complete(Head),
    /// A plain head so far, not complete yet.
    Partial,
    /// Not a plain head: the general path takes the connection.
    NotMine,
}

/// Parses the head at the start of `buf`, at most `max_len` bytes and `max_fields` fields.
pub(crate) fn parse(
    buf: &[u8],
    max_len: usize,
    max_fields: usize,
    fields: &mut Vec<Field>,
) -> Parsed {
    fields.clear();
    let n = buf.len();
    let partial = || {
        if n >= max_len {
            Parsed::NotMine
        } else {
            Parsed::Partial
        }
    };
    // METHOD SP
    let mut pos = 0;
    while pos < n && is_tchar(buf[pos]) {
        pos += 1;
    }
    if pos == n {
        return partial();
    }
    if pos == 0 || buf[pos] != b' ' {
        return Parsed::NotMine;
    }
    let method = (0, pos);
    pos += 1;
    // origin-form SP
    let t0 = pos;
    if pos == n {
        return partial();
    }
    if buf[pos] != b'/' {
        return Parsed::NotMine;
    }
    while pos < n && is_target(buf[pos]) {
        pos += 1;
    }
    if pos == n {
        return partial();
    }
    if buf[pos] != b' ' {
        return Parsed::NotMine;
    }
    let target = (t0, pos);
    pos += 1;
    // HTTP/1.1 CRLF
    const VERSION: &[u8] = b"HTTP/1.1\r\n";
    let have = (n - pos).min(VERSION.len());
    if buf[pos..pos + have] != VERSION[..have] {
        return Parsed::NotMine;
    }
    if have < VERSION.len() {
        return partial();
    }
    pos += VERSION.len();
    match scan_fields(buf, pos, max_len, max_fields, fields) {
        Scan::Complete(len) => Parsed::Complete(Head {
            method,
            target,
            len,
        }),
        Scan::Partial => Parsed::Partial,
        Scan::NotPlain => Parsed::NotMine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &[u8]) -> (Parsed, Vec<(String, String)>) {
        let mut f = Vec::new();
        let p = parse(s, 64 * 1024, 100, &mut f);
        let pairs = f
            .iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(&s[f.name.0..f.name.1]).into_owned(),
                    String::from_utf8_lossy(&s[f.value.0..f.value.1]).into_owned(),
                )
            })
            .collect();
        (p, pairs)
    }

    #[test]
    fn parses_a_plain_head() {
        let s = b"GET /echo/status?x=1 HTTP/1.1\r\nHost: omac\r\nX-Empty:\r\nX-Pad: \t a b \t\r\n\r\nBODY";
        let (p, f) = run(s);
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert_eq!(&s[h.method.0..h.method.1], b"GET");
        assert_eq!(&s[h.target.0..h.target.1], b"/echo/status?x=1");
        assert_eq!(&s[h.len..], b"BODY");
        assert_eq!(
            f,
            [
                ("Host".into(), "omac".into()),
                ("X-Empty".into(), "".into()),
                ("X-Pad".into(), "a b".into())
            ]
        );
    }

    #[test]
    fn waits_for_the_rest_of_a_plain_head() {
        for cut in 1..40 {
            let s = b"POST /echo/echo HTTP/1.1\r\nHost: omac\r\n\r\n";
            if cut < s.len() {
                assert_eq!(run(&s[..cut]).0, Parsed::Partial, "{cut}");
            }
        }
    }

    #[test]
    fn leaves_everything_unusual_to_the_general_path() {
        let cases: &[&[u8]] = &[
            b"GET /a HTTP/1.1\nHost: x\r\n\r\n", // bare LF ending the request line
            b"GET /a HTTP/1.1\r\nHost: x\n\r\n", // bare LF ending a field
            b"GET /a HTTP/1.1\r\nHost: x\r\n\n", // bare LF ending the head
            b"GET /a HTTP/1.1\r\nX: a\rB: c\r\n\r\n", // bare CR inside a value
            b"GET /a HTTP/1.1\r\nX: a\r",        // not yet known: see below
            b"GET /a HTTP/1.1\r\nX: a\r\n b\r\n\r\n", // obs-fold
            b"GET /a HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", // obs-fold with a tab
            b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", // space before the colon
            b"GET /a HTTP/1.1\r\n: x\r\n\r\n",   // empty name
            b"GET /a HTTP/1.1\r\nX\x00: x\r\n\r\n", // NUL in a name
            b"GET /a HTTP/1.1\r\nX: \x01\r\n\r\n", // control in a value
            b"GET /a HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n", // obs-text (non-ASCII)
            b"GET /a HTTP/1.1\r\nNo colon here\r\n\r\n", // no colon
            b"GET /a HTTP/1.0\r\n\r\n",          // HTTP/1.0
            b"GET /a HTTP/2.0\r\n\r\n",          // another version
            b"GET /a  HTTP/1.1\r\n\r\n",         // two spaces
            b"GET  /a HTTP/1.1\r\n\r\n",         // two spaces
            b"GET http://x/a HTTP/1.1\r\n\r\n",  // absolute form
            b"OPTIONS * HTTP/1.1\r\n\r\n",       // asterisk form
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",   // authority form
            b"GET /a#frag HTTP/1.1\r\n\r\n",     // fragment
            b"GET /a\"b HTTP/1.1\r\n\r\n",       // quote
            b"GET /a\\b HTTP/1.1\r\n\r\n",       // backslash
            b"GET /a\tb HTTP/1.1\r\n\r\n",       // tab in the target
            b"G(T /a HTTP/1.1\r\n\r\n",          // not a token method
            b"\r\nGET /a HTTP/1.1\r\n\r\n",      // leading empty line
            b"GET /a HTTP/1.1 \r\n\r\n",         // trailing space
            b"\x16\x03\x01\x02\x00",             // TLS hello
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", // h2 preface
        ];
        for c in cases {
            let p = run(c).0;
            if c == b"GET /a HTTP/1.1\r\nX: a\r" {
                // A CR at the very end may still be followed by its LF.
                assert_eq!(p, Parsed::Partial);
            } else {
                assert_eq!(p, Parsed::NotMine, "{:?}", String::from_utf8_lossy(c));
            }
        }
    }

    #[test]
    fn limits_size_and_field_count() {
        let mut f = Vec::new();
        let s = b"GET /a HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(parse(s, 1024, 2, &mut f), Parsed::Complete(_)));
        assert_eq!(parse(s, 1024, 1, &mut f), Parsed::NotMine);
        assert_eq!(parse(s, s.len() - 1, 10, &mut f), Parsed::NotMine);
        assert!(matches!(parse(s, s.len(), 10, &mut f), Parsed::Complete(_)));
        // An incomplete head that already fills the limit will never fit.
        assert_eq!(parse(&s[..20], 20, 10, &mut f), Parsed::NotMine);
        assert_eq!(parse(&s[..20], 21, 10, &mut f), Parsed::Partial);
    }

    /// Every byte string the parser takes as complete is taken by httparse the same way
    /// (the general path's parser): same method, target, fields and length.
    #[test]
    fn agrees_with_httparse_on_what_it_accepts() {
        let samples: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n\r\n",
            b"DELETE /x/y;p=1?q=a:b@c/d HTTP/1.1\r\nA:b\r\nC:  d  \r\n\r\n",
            b"M-1~ /%41 HTTP/1.1\r\nX-!#$%&'*+-.^_`|~: v\r\n\r\n",
        ];
        for s in samples {
            let mut f = Vec::new();
            let Parsed::Complete(h) = parse(s, 1 << 16, 100, &mut f) else {
                panic!("{s:?}")
            };
            let mut hs = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Request::new(&mut hs);
            let n = match r.parse(s).unwrap() {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("partial"),
            };
            assert_eq!(n, h.len);
            assert_eq!(r.method.unwrap().as_bytes(), &s[h.method.0..h.method.1]);
            assert_eq!(r.path.unwrap().as_bytes(), &s[h.target.0..h.target.1]);
            assert_eq!(r.headers.len(), f.len());
            for (a, b) in r.headers.iter().zip(&f) {
                assert_eq!(a.name.as_bytes(), &s[b.name.0..b.name.1]);
                assert_eq!(a.value, &s[b.value.0..b.value.1]);
            }
        }
    }
}
