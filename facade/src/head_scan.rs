//! One pass over the field lines of a message head (RFC 9112 §5): every byte checked
//! against a table, each line's name, value and end recorded. Only the plainest form is
//! taken — token names followed directly by `:`, values of visible ASCII, spaces and tabs,
//! CRLF line ends — anything else is [`Scan::NotPlain`]. Also: the names the facade cares
//! about, recognised by length then bytes.

/// Byte classes.
const TCHAR: u8 = 1;
const VALUE: u8 = 2;
const TARGET: u8 = 4;

/// The class bits of every byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut k = 0;
        let alnum = c.is_ascii_alphanumeric();
        if alnum
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            k |= TCHAR;
        }
        if (c >= 0x20 && c < 0x7f) || c == b'\t' {
            k |= VALUE;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'%'
            )
        {
            k |= TARGET;
        }
        t[b] = k;
        b += 1;
    }
    t
};

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    CLASS[b as usize] & TCHAR != 0
}

/// A byte of a field value (or reason phrase): visible ASCII, space, tab.
pub(crate) fn is_value(b: u8) -> bool {
    CLASS[b as usize] & VALUE != 0
}

/// A byte of an origin-form target the fast path takes: RFC 3986 unreserved, sub-delims,
/// `:`, `@`, `/`, `?` and `%`.
pub(crate) fn is_target(b: u8) -> bool {
    CLASS[b as usize] & TARGET != 0
}

/// Where a field sits in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// The name, as sent (case kept).
    pub name: (usize, usize),
    /// The value, surrounding spaces and tabs trimmed.
    pub value: (usize, usize),
    /// Just past the line's CRLF (0 when unknown: the line cannot be copied as it came).
    pub end: usize,
}

/// What the scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The head ends here (past the empty line).
    Complete(usize),
    /// Plain so far, not complete.
    Partial,
    /// Not plain (or over a limit).
    NotPlain,
}

/// Scans the field lines from `pos` to the empty line that ends the head.
pub(crate) fn scan_fields(
    buf: &[u8],
    mut pos: usize,
    max_len: usize,
    max_fields: usize,
    fields: &mut Vec<Field>,
) -> Scan {
    let n = buf.len();
    loop {
        if pos > max_len {
            return Scan::NotPlain;
        }
        // The empty line.
        if pos + 1 < n && buf[pos] == b'\r' {
            if buf[pos + 1] == b'\n' && pos + 2 <= max_len {
                return Scan::Complete(pos + 2);
            }
            return Scan::NotPlain;
        }
        if pos >= n || (pos + 1 == n && buf[pos] == b'\r') {
            return if n >= max_len {
                Scan::NotPlain
            } else {
                Scan::Partial
            };
        }
        let start = pos;
        while pos < n && CLASS[buf[pos] as usize] & TCHAR != 0 {
            pos += 1;
        }
        if pos == n {
            return partial(n, max_len);
        }
        if pos == start || buf[pos] != b':' {
            return Scan::NotPlain;
        }
        let name = (start, pos);
        pos += 1;
        while pos < n && (buf[pos] == b' ' || buf[pos] == b'\t') {
            pos += 1;
        }
        let v0 = pos;
        pos = value_end(buf, pos);
        let mut v1 = pos;
        while v1 > v0 && (buf[v1 - 1] == b' ' || buf[v1 - 1] == b'\t') {
            v1 -= 1;
        }
        if pos == n || (pos + 1 == n && buf[pos] == b'\r') {
            return partial(n, max_len);
        }
        if buf[pos] != b'\r' || buf[pos + 1] != b'\n' {
            return Scan::NotPlain;
        }
        pos += 2;
        if fields.len() == max_fields {
            return Scan::NotPlain;
        }
        fields.push(Field {
            name,
            value: (v0, v1),
            end: pos,
        });
    }
}

/// Where the run of value bytes starting at `pos` ends: eight bytes at a time while they
/// are all visible ASCII or spaces, then byte by byte (tabs, the CR, anything else).
fn value_end(buf: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(w) = buf.get(pos..pos + 8) {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let below_space = w.wrapping_sub(0x20 * ONES) & !w & HIGH;
        let v = w ^ (0x7f * ONES);
        let del = v.wrapping_sub(ONES) & !v & HIGH;
        if (w & HIGH) | below_space | del != 0 {
            break;
        }
        pos += 8;
    }
    while pos < buf.len() && CLASS[buf[pos] as usize] & VALUE != 0 {
        pos += 1;
    }
    pos
}

fn partial(n: usize, max_len: usize) -> Scan {
    if n >= max_len {
        Scan::NotPlain
    } else {
        Scan::Partial
    }
}

/// The field names the facade treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Authorization,
    Connection,
    ContentLength,
    ContentType,
    Date,
    Expect,
    Host,
    KeepAlive,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    XAccelBuffering,
    XForwardedPrefix,
    XOmacFacadeToken,
    Other,
}

/// True when the token `name` is `lower` (lowercase letters and `-`) in any case. For
/// token bytes, setting bit 0x20 lowercases letters and changes nothing else that could
/// match.
fn token_is(name: &[u8], lower: &[u8]) -> bool {
    if name.len() != lower.len() {
        return false;
    }
    let mut a = name.chunks_exact(8);
    let mut b = lower.chunks_exact(8);
    for (x, y) in a.by_ref().zip(b.by_ref()) {
        let x = u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let y = u64::from_le_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        if x | 0x2020_2020_2020_2020 != y {
            return false;
        }
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(&x, &y)| x | 0x20 == y)
}

/// Recognises the token `name` (ASCII case-insensitive).
pub(crate) fn known(name: &[u8]) -> Known {
    let Some(&first) = name.first() else {
        return Known::Other;
    };
    let is = |w: &[u8]| token_is(name, w);
    match (name.len(), first | 0x20) {
        (2, b't') if is(b"te") => Known::Te,
        (4, b'h') if is(b"host") => Known::Host,
        (4, b'd') if is(b"date") => Known::Date,
        (6, b'e') if is(b"expect") => Known::Expect,
        (7, b'u') if is(b"upgrade") => Known::Upgrade,
        (7, b't') if is(b"trailer") => Known::Trailer,
        (10, b'c') if is(b"connection") => Known::Connection,
        (10, b'k') if is(b"keep-alive") => Known::KeepAlive,
        (12, b'c') if is(b"content-type") => Known::ContentType,
        (13, b'a') if is(b"authorization") => Known::Authorization,
        (14, b'c') if is(b"content-length") => Known::ContentLength,
        (16, b'p') if is(b"proxy-connection") => Known::ProxyConnection,
        (17, b't') if is(b"transfer-encoding") => Known::TransferEncoding,
        (17, b'x') if is(b"x-accel-buffering") => Known::XAccelBuffering,
        (18, b'p') if is(b"proxy-authenticate") => Known::ProxyAuthenticate,
        (18, b'x') if is(b"x-forwarded-prefix") => Known::XForwardedPrefix,
        (19, b'p') if is(b"proxy-authorization") => Known::ProxyAuthorization,
        (19, b'x') if is(b"x-omac-facade-token") => Known::XOmacFacadeToken,
        _ => Known::Other,
    }
}

/// Digits only (no sign, space or comma), at most 18 of them: the value.
pub(crate) fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    let mut n = 0u64;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_rfcs() {
        for b in 0u8..=255 {
            let tchar = b"!#$%&'*+-.^_`|~".contains(&b) || b.is_ascii_alphanumeric();
            assert_eq!(is_tchar(b), tchar, "{b}");
            assert_eq!(is_value(b), (0x20..0x7f).contains(&b) || b == b'\t', "{b}");
            if is_target(b) {
                assert!(
                    b.is_ascii_graphic() && !b"\"#<>[\\]^`{|}".contains(&b),
                    "{b}"
                );
            }
        }
    }

    #[test]
    fn names_are_recognised_in_any_case() {
        // Every token byte against every name: only the name itself, in any case, matches.
        let names: [&[u8]; 18] = [
            b"te",
            b"host",
            b"date",
            b"expect",
            b"upgrade",
            b"trailer",
            b"connection",
            b"keep-alive",
            b"content-type",
            b"authorization",
            b"content-length",
            b"proxy-connection",
            b"transfer-encoding",
            b"x-accel-buffering",
            b"proxy-authenticate",
            b"x-forwarded-prefix",
            b"proxy-authorization",
            b"x-omac-facade-token",
        ];
        for n in names {
            assert_ne!(known(n), Known::Other);
            assert_eq!(known(&n.to_ascii_uppercase()), known(n));
            for i in 0..n.len() {
                for b in 0u8..=255 {
                    if !is_tchar(b) || b.eq_ignore_ascii_case(&n[i]) {
                        continue;
                    }
                    let mut m = n.to_vec();
                    m[i] = b;
                    assert_eq!(known(&m), Known::Other, "{:?}", String::from_utf8_lossy(&m));
                }
            }
        }
        assert_eq!(known(b""), Known::Other);
        assert_eq!(known(b"Content-Length"), Known::ContentLength);
        assert_eq!(known(b"X-OMAC-FACADE-TOKEN"), Known::XOmacFacadeToken);
        assert_eq!(known(b"content-lengths"), Known::Other);
        assert_eq!(known(b"hosts"), Known::Other);
        assert_eq!(digits(b"0042"), Some(42));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 ",
            b"1,1",
            b"1234567890123456789",
        ] {
            assert_eq!(digits(bad), None);
        }
    }

    #[test]
    fn the_word_scan_agrees_with_the_byte_table() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut buf = [0u8; 24];
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly value bytes, sometimes anything.
                *b = if state.is_multiple_of(7) {
                    (state >> 8) as u8
                } else {
                    0x20 + (state >> 8) as u8 % 0x5f
                };
            }
            let slow = buf.iter().position(|&b| !is_value(b)).unwrap_or(buf.len());
            assert_eq!(value_end(&buf, 0), slow, "{buf:?}");
        }
    }

    #[test]
    fn scans_and_stops_at_the_first_unusual_byte() {
        let mut f = Vec::new();
        let s = b"A: 1\r\nB:2 \r\n\r\nrest";
        assert_eq!(scan_fields(s, 0, 1024, 10, &mut f), Scan::Complete(14));
        assert_eq!(f[1].value, (8, 9));
        assert_eq!(f[1].end, 12);
        for cut in 0..13 {
            f.clear();
            assert_eq!(
                scan_fields(&s[..cut], 0, 1024, 10, &mut f),
                Scan::Partial,
                "{cut}"
            );
        }
        for bad in [
            &b"A: 1\n\r\n"[..],
            b"A: 1\r\r\n",
            b"A: 1\rX\r\n",
            b" A: 1\r\n\r\n",
            b"A : 1\r\n\r\n",
            b"A: \x7f\r\n\r\n",
            b"\r\r",
            b"\r\x00",
        ] {
            f.clear();
            assert_eq!(
                scan_fields(bad, 0, 1024, 10, &mut f),
                Scan::NotPlain,
                "{bad:?}"
            );
        }
    }
}
