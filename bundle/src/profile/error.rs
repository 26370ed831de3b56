//! Errors about profile files: which file, where in it, what is wrong, and what to write.

use std::fmt;

use super::locate::{locate, render, Step};

/// One problem found in a profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Where in the document, as `network.listen_port[2]`.
    pub path: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

/// A profile that cannot be used: the file and every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// The profile file (`builtin:NAME` for embedded ones).
    pub file: String,
    /// The problems, in document order.
    pub issues: Vec<Issue>,
}

impl ProfileError {
    /// An error with one issue.
    pub fn one(file: &str, path: &str, message: String, fix: String) -> Self {
        ProfileError {
            file: file.to_string(),
            issues: vec![Issue {
                path: path.to_string(),
                position: None,
                message,
                fix,
            }],
        }
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some((line, col)) = issue.position {
                write!(f, ":{line}:{col}")?;
            }
            write!(f, ": {}: {}", issue.path, issue.message)?;
            if !issue.fix.is_empty() {
                write!(f, "\n  fix: {}", issue.fix)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {}

/// Collects semantic problems while validating one parsed profile.
pub struct Issues<'a> {
    text: &'a str,
    found: Vec<Issue>,
}

impl<'a> Issues<'a> {
    /// Starts collecting for the document `text` (used to find positions).
    pub fn new(text: &'a str) -> Self {
        Issues {
            text,
            found: Vec::new(),
        }
    }

    /// Records a problem at `path`.
    pub fn add(&mut self, path: &[Step], message: impl Into<String>, fix: impl Into<String>) {
        self.found.push(Issue {
            path: render(path),
            position: locate(self.text, path),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// The error for `file`, or `Ok` when nothing was found.
    pub fn finish(mut self, file: &str) -> Result<(), ProfileError> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found
            .sort_by_key(|i| i.position.unwrap_or((usize::MAX, 0)));
        Err(ProfileError {
            file: file.to_string(),
            issues: self.found,
        })
    }
}

/// Path helper: `p(&["network", "listen_port"]).idx(2)`.
pub fn keys(names: &[&str]) -> Vec<Step> {
    names.iter().map(|n| Step::Key((*n).to_string())).collect()
}

/// `keys(names)` followed by an array index.
pub fn at(names: &[&str], index: usize) -> Vec<Step> {
    let mut v = keys(names);
    v.push(Step::Index(index));
    v
}
