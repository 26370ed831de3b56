//! The build and cache folders and editor files that are not part of a skill (reference
//! §5.3): left out of the Go bundle hash and of the skill layer alike, at any depth.

/// Directory names left out wherever they appear.
pub const DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    "__pycache__",
    "node_modules",
    ".cache",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "target",
    "dist",
    "build",
    ".idea",
    ".vscode",
];

/// Whether a directory called `name` is left out.
pub fn is_excluded_dir(name: &[u8]) -> bool {
    DIRS.iter().any(|d| d.as_bytes() == name)
}

/// Whether a file called `name` is left out: `.DS_Store`, `Thumbs.db`, `.gitignore.swp`, and
/// names ending in `.pyc`, `.pyo`, `.swp` or `~` (but not a name that is only the suffix).
pub fn is_excluded_file(name: &[u8]) -> bool {
    if [&b".DS_Store"[..], b"Thumbs.db", b".gitignore.swp"].contains(&name) {
        return true;
    }
    [&b".pyc"[..], b".pyo", b".swp", b"~"]
        .iter()
        .any(|s| name.ends_with(s) && name != *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_excluded_dir(b"node_modules"));
        assert!(!is_excluded_dir(b"scripts"));
        assert!(is_excluded_file(b"x.pyc"));
        assert!(is_excluded_file(b"notes.txt~"));
        assert!(!is_excluded_file(b"~"));
        assert!(!is_excluded_file(b".pyc"));
        assert!(!is_excluded_file(b"sidecar.py"));
    }
}
