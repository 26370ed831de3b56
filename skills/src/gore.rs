//! `pattern:` fields are Go regular expressions (RE2 syntax, as the Go omac compiles them).
//! Rust's `regex` is RE2 too, with two differences this module removes: Go's `\d \w \s \b`
//! are ASCII-only (Rust's are Unicode), and Go accepts `\Q...\E` literals.

use regex::Regex;

/// Compiles a Go-syntax pattern; unanchored, as Go's `MatchString` (use `^...$` to anchor).
pub fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(&translate(pattern)).map_err(|e| e.to_string())
}

/// Rewrites the Go-only spellings into equivalent Rust-regex ones.
pub fn translate(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut class_start = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            match (n, in_class) {
                ('Q', _) => {
                    let rest: String = chars[i + 2..].iter().collect();
                    let (lit, after) = match rest.find("\\E") {
                        Some(end) => (&rest[..end], end + 2),
                        None => (rest.as_str(), rest.len()),
                    };
                    let escaped = regex::escape(lit);
                    out.push_str(&escaped);
                    i += 2 + rest[..after].chars().count();
                    continue;
                }
                ('d', false) => out.push_str("[0-9]"),
                ('D', false) => out.push_str("[^0-9]"),
                ('w', false) => out.push_str("[0-9A-Za-z_]"),
                ('W', false) => out.push_str("[^0-9A-Za-z_]"),
                ('s', false) => out.push_str("[\\t\\n\\f\\r ]"),
                ('S', false) => out.push_str("[^\\t\\n\\f\\r ]"),
                ('b', false) => out.push_str("(?-u:\\b)"),
                ('B', false) => out.push_str("(?-u:\\B)"),
                ('d', true) => out.push_str("0-9"),
                ('D', true) => out.push_str("[:^digit:]"),
                ('w', true) => out.push_str("0-9A-Za-z_"),
                ('W', true) => out.push_str("[:^word:]"),
                ('s', true) => out.push_str("\\t\\n\\f\\r "),
                ('S', true) => out.push_str("[:^space:]"),
                _ => {
                    out.push(c);
                    out.push(n);
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == '[' && chars.get(i + 1) == Some(&':') {
                // A POSIX class such as [:alpha:] inside a bracket: copy it whole.
                let mut j = i + 2;
                while j + 1 < chars.len() && !(chars[j] == ':' && chars[j + 1] == ']') {
                    j += 1;
                }
                let end = (j + 2).min(chars.len());
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            // `]` right after `[` or `[^` is a literal.
            if c == ']' && i > class_start {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        if c == '[' {
            in_class = true;
            class_start = i + 1;
            if chars.get(i + 1) == Some(&'^') {
                class_start = i + 2;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        let re = compile(r"^\d+$").unwrap();
        assert!(re.is_match("0123"));
        assert!(!re.is_match("١٢٣"), "Arabic-Indic digits are not \\d in Go");
        let re = compile(r"^[\w-]{3,}$").unwrap();
        assert!(re.is_match("ab-_9"));
        assert!(!re.is_match("äbc"));
        let re = compile(r"^[^\D]+$").unwrap();
        assert!(re.is_match("42"));
        assert!(compile(r"\bword\b").unwrap().is_match("a word here"));
    }

    #[test]
    fn literals_and_posix_classes() {
        let re = compile(r"^\Qa.b*c\E$").unwrap();
        assert!(re.is_match("a.b*c"));
        assert!(!re.is_match("axbbc"));
        let re = compile(r"^[[:alpha:]]+$").unwrap();
        assert!(re.is_match("abc"));
        let re = compile(r"^[]a]+$").unwrap();
        assert!(re.is_match("]a]"));
    }

    #[test]
    fn unanchored_like_match_string() {
        assert!(compile("abc").unwrap().is_match("xxabcxx"));
        assert!(compile("(").is_err());
    }
}
