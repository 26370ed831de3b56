//! Finds the line and column of a value inside JSON text, so that errors found after
//! parsing (a port out of range, a relative path) can point at the exact spot.

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// Renders a path the way error messages show it: `network.listen_port[2]`.
pub fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// Skips one string starting at `"` and returns its raw contents.
    fn string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.text.len() {
            match self.text[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    let raw = &self.text[start..self.pos];
                    self.pos += 1;
                    return serde_json::from_slice::<String>(
                        &[b"\"".as_slice(), raw, b"\""].concat(),
                    )
                    .ok();
                }
                _ => self.pos += 1,
            }
        }
        None
    }

    /// Skips one value of any kind.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                None
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace() {
                        break;
                    }
                    self.pos += 1;
                }
                Some(())
            }
        }
    }

    /// Moves to the value at `step` inside the container at the current position.
    fn enter(&mut self, step: &Step) -> Option<()> {
        self.ws();
        match (step, self.peek()?) {
            (Step::Key(want), b'{') => {
                self.pos += 1;
                loop {
                    self.ws();
                    if self.peek()? == b'}' {
                        return None;
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    self.ws();
                    if &key == want {
                        return Some(());
                    }
                    self.skip()?;
                    self.ws();
                    if self.peek()? == b',' {
                        self.pos += 1;
                    }
                }
            }
            (Step::Index(want), b'[') => {
                self.pos += 1;
                for _ in 0..*want {
                    self.skip()?;
                    self.ws();
                    if self.peek()? != b',' {
                        return None;
                    }
                    self.pos += 1;
                }
                self.ws();
                Some(())
            }
            _ => None,
        }
    }
}

/// The 1-based line and column where the value at `path` starts, if it is in `text`.
pub fn locate(text: &str, path: &[Step]) -> Option<(usize, usize)> {
    let mut s = Scanner {
        text: text.as_bytes(),
        pos: 0,
    };
    for step in path {
        s.enter(step)?;
    }
    s.ws();
    let before = &text.as_bytes()[..s.pos];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = s.pos
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let text = "{\n  \"a\": {\"b\": [1, 2,\n    70000]},\n  \"c\": \"x\"\n}\n";
        let p = [Step::Key("a".into()), Step::Key("b".into()), Step::Index(2)];
        assert_eq!(locate(text, &p), Some((3, 5)));
        assert_eq!(locate(text, &[Step::Key("c".into())]), Some((4, 8)));
        assert_eq!(locate(text, &[Step::Key("zz".into())]), None);
        assert_eq!(render(&p), "a.b[2]");
    }

    #[test]
    fn skips_strings_with_brackets_and_escapes() {
        let text = r#"{"s": "a}\"]b", "t": [ "x", {"u": 1} ]}"#;
        let p = [Step::Key("t".into()), Step::Index(1), Step::Key("u".into())];
        assert_eq!(locate(text, &p), Some((1, 35)));
    }
}
