//! The built-in profiles, embedded from `profiles/` at build time.

/// `(name, JSON text)` of every built-in profile.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../../profiles/default.json")),
    ("strict", include_str!("../../../profiles/strict.json")),
    ("ci", include_str!("../../../profiles/ci.json")),
    ("open", include_str!("../../../profiles/open.json")),
];

/// The text of built-in profile `name`.
pub fn text(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Names of the built-in profiles.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}
