//! Request paths: `//` collapsed, dot segments (also percent-encoded or behind a backslash)
//! refused, then split into the mount and the rest forwarded to the sidecar.

use std::borrow::Cow;

/// Why a path was refused (the `X-Omac-Reason` of the 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// The path does not start with `/` (asterisk or authority form).
    NotAbsolute,
    /// A `.` or `..` segment, literal or encoded.
    DotSegment,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// An encoded NUL or control character.
    ControlChar,
}

impl PathError {
    /// The short reason sent in `X-Omac-Reason`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "bad-path",
            PathError::DotSegment => "dot-segment",
            PathError::BadEscape => "bad-escape",
            PathError::ControlChar => "bad-path",
        }
    }
}

/// Collapses repeated slashes and checks every segment.
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let b = path.as_bytes();
    let needs_collapse = b.windows(2).any(|w| w == b"//");
    let needs_check = b.iter().any(|&c| c == b'.' || c == b'%' || c == b'\\');
    let out: Cow<'_, str> = if needs_collapse {
        let mut s = String::with_capacity(path.len());
        let mut prev_slash = false;
        for ch in path.chars() {
            if ch == '/' {
                if prev_slash {
                    continue;
                }
                prev_slash = true;
            } else {
                prev_slash = false;
            }
            s.push(ch);
        }
        Cow::Owned(s)
    } else {
        Cow::Borrowed(path)
    };
    if needs_check {
        for seg in out.split('/') {
            check_segment(seg)?;
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `b` with every `%XX` decoded; None when a `%` is not followed by two hex digits.
pub(crate) fn percent_decode(b: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1).copied().and_then(hex)?;
            let l = b.get(i + 2).copied().and_then(hex)?;
            decoded.push(h * 16 + l);
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    Some(decoded)
}

fn check_segment(seg: &str) -> Result<(), PathError> {
    let decoded = percent_decode(seg.as_bytes()).ok_or(PathError::BadEscape)?;
    if decoded.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlChar);
    }
    for piece in decoded.split(|&c| c == b'/' || c == b'\\') {
        if piece == b"." || piece == b".." {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

/// Splits a normalized path into the mount (first segment) and the rest (`""` or `/...`).
pub(crate) fn split_mount(path: &str) -> (&str, &str) {
    let p = &path[1..];
    match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_and_keeps_trailing_slash() {
        assert_eq!(normalize("//echo//status/").unwrap(), "/echo/status/");
        assert_eq!(normalize("/echo/status").unwrap(), "/echo/status");
        assert!(matches!(normalize("/a/b").unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn refuses_dot_segments_in_every_spelling() {
        for p in [
            "/../etc/passwd",
            "/echo/../x",
            "/echo/./x",
            "/echo/%2e%2e/x",
            "/echo/%2E./x",
            "/echo/.%2e",
            "/echo/..%2fx",
            "/echo/..%5cx",
            "/echo/a\\..\\b",
            "/echo/..",
        ] {
            assert_eq!(normalize(p), Err(PathError::DotSegment), "{p}");
        }
        // Dots inside names are fine.
        assert!(normalize("/echo/file.tar.gz").is_ok());
        assert!(normalize("/echo/...").is_ok());
        assert!(normalize("/echo/.well-known/x").is_ok());
    }

    #[test]
    fn refuses_bad_escapes_and_control_chars() {
        assert_eq!(normalize("/echo/%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/echo/%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/echo/%00"), Err(PathError::ControlChar));
        assert_eq!(normalize("/echo/%0d%0aX:1"), Err(PathError::ControlChar));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
        assert!(normalize("/echo/a%20b").is_ok());
    }

    #[test]
    fn splits_mount_and_rest() {
        assert_eq!(split_mount("/echo/status"), ("echo", "/status"));
        assert_eq!(split_mount("/echo"), ("echo", ""));
        assert_eq!(split_mount("/echo/"), ("echo", "/"));
        assert_eq!(split_mount("/"), ("", ""));
    }
}
