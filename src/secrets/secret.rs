//! A secret value in memory: never printed, never serialised, zeroed when dropped.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A secret's bytes. `Debug` and `Display` print `<redacted>`; serialising fails; the
/// buffer is zeroed on drop. There is no `Clone`.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of `bytes` (no copy is left behind by this call).
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// Takes ownership of a string's bytes.
    pub fn from_string(s: String) -> Secret {
        Secret::new(s.into_bytes())
    }

    /// The bytes, for the one place that hands them on (the keychain, a sidecar's env).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, when it is UTF-8 (patterns are checked on text).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `sha256:` and the first 12 hex digits of the value's sha256: what `omac config show`
    /// prints, identical to the Go omac's fingerprint.
    pub fn fingerprint(&self) -> String {
        let h = hex::encode(Sha256::digest(self.expose()));
        format!("sha256:{}", &h[..12])
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refusing to serialise a secret"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown_never_serialised() {
        let s = Secret::from_string("hunter2-value".into());
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", vec![&s]), "[Secret(<redacted>)]");
        assert!(serde_json::to_string(&s).is_err());
        assert_eq!(s.expose_str(), Some("hunter2-value"));
        // `printf %s hunter2-value | sha256sum | cut -c1-12`
        assert_eq!(s.fingerprint(), "sha256:2f22de86cfcb");
    }
}
