//! The OS keychain, through the keyring crate family.
//!
//! **Why keyring v4 (`keyring-core` 1 + one store crate per backend) and not keyring v3.**
//! v3 picks its backend by Cargo features and exposes one default credential builder per
//! build, with the Linux native and Secret Service backends merged behind feature combos;
//! choosing at run time (`OMAC_KEYRING_BACKEND`, or falling back to the kernel keyring when
//! no Secret Service answers) would mean working around its defaults. v4 makes the store a
//! value: omac builds exactly one store at start (Secret Service, keyutils, macOS Keychain or
//! Windows Credential Manager) and creates entries from it, and the store crates are where
//! fixes now land (v3 is in maintenance). Its Secret Service store is zbus-based (pure Rust:
//! no libdbus at build or run time), and its keyutils store links keys into the persistent
//! keyring so that a value set by one `omac` process is found by the next. The cost is
//! MSRV 1.88, which the workspace already requires.
//!
//! Names and attributes match the Go omac (go-keyring): Secret Service items carry the
//! attributes `service` and `username` and go-keyring's label, in the default collection;
//! Windows credentials are named `service:account`; macOS generic passwords use service
//! and account. A secret stored by either program is found by the other.
//!
//! Backends, chosen by `OMAC_KEYRING_BACKEND` (`auto` when unset):
//! - `auto`: macOS Keychain on macOS, Credential Manager on Windows; on Linux the Secret
//!   Service when one answers on the session bus, else the kernel keyring (keyutils) with a
//!   notice that it does not survive a reboot;
//! - `secret-service`, `keyutils`, `macos`, `windows`: that one or an error (exit 8).

use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry, Error as KrError};

use crate::secrets::naming::{PROBE_ACCOUNT, PROBE_SERVICE};
use crate::secrets::Secret;

/// The variable that picks a backend explicitly.
pub const BACKEND_VAR: &str = "OMAC_KEYRING_BACKEND";

/// A keychain backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// freedesktop Secret Service over D-Bus (GNOME Keyring, KWallet, KeePassXC).
    SecretService,
    /// The Linux kernel keyring (RAM only: lost at reboot).
    Keyutils,
    /// The macOS Keychain.
    MacOs,
    /// The Windows Credential Manager.
    Windows,
}

impl Backend {
    /// The name `OMAC_KEYRING_BACKEND` uses.
    pub fn name(self) -> &'static str {
        match self {
            Backend::SecretService => "secret-service",
            Backend::Keyutils => "keyutils",
            Backend::MacOs => "macos",
            Backend::Windows => "windows",
        }
    }

    fn parse(s: &str) -> Option<Option<Backend>> {
        match s {
            "" | "auto" => Some(None),
            "secret-service" | "secretservice" | "libsecret" => Some(Some(Backend::SecretService)),
            "keyutils" | "kernel" => Some(Some(Backend::Keyutils)),
            "macos" | "keychain" => Some(Some(Backend::MacOs)),
            "windows" | "wincred" => Some(Some(Backend::Windows)),
            _ => None,
        }
    }
}

/// What went wrong with the keychain.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    /// `OMAC_KEYRING_BACKEND` names no backend.
    #[error(
        "{BACKEND_VAR}={0:?} is not a keychain backend\n  fix: use auto, secret-service, keyutils, \
         macos or windows"
    )]
    BadChoice(String),
    /// The chosen backend cannot be used here.
    #[error("the {backend} keychain is not available: {reason}\n  fix: {fix}")]
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: String,
        /// What to do.
        fix: String,
    },
    /// An operation failed.
    #[error("keychain ({backend}) {op} {service}/{account}: {reason}\n  fix: {fix}")]
    Failed {
        /// The backend.
        backend: &'static str,
        /// `reading`, `writing`, `deleting`.
        op: &'static str,
        /// The service.
        service: String,
        /// The account (secret name).
        account: String,
        /// The backend's message (never a value).
        reason: String,
        /// What to do.
        fix: &'static str,
    },
}

/// An open keychain.
pub struct Keychain {
    backend: Backend,
    store: Arc<CredentialStore>,
    why: String,
}

impl std::fmt::Debug for Keychain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keychain")
            .field("backend", &self.backend)
            .field("why", &self.why)
            .finish()
    }
}

impl Keychain {
    /// Opens the backend `OMAC_KEYRING_BACKEND` names, or the automatic choice.
    pub fn open() -> Result<Keychain, KeychainError> {
        let choice = std::env::var(BACKEND_VAR).unwrap_or_default();
        Keychain::open_named(choice.trim())
    }

    /// Opens the backend called `choice` (`auto` or empty for the automatic choice).
    pub fn open_named(choice: &str) -> Result<Keychain, KeychainError> {
        match Backend::parse(choice) {
            None => Err(KeychainError::BadChoice(choice.to_string())),
            Some(Some(b)) => open_backend(b).map(|store| Keychain {
                backend: b,
                store,
                why: format!("chosen by {BACKEND_VAR}"),
            }),
            Some(None) => open_auto(),
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why this backend was chosen, for `omac secrets backend` and notices.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// Whether values kept here are lost at reboot (the kernel keyring).
    pub fn is_volatile(&self) -> bool {
        self.backend == Backend::Keyutils
    }

    fn entry(&self, service: &str, account: &str) -> Result<Entry, KrError> {
        let label = format!("Password for '{account}' on '{service}'");
        let target = format!("{service}:{account}");
        let mut mods: HashMap<&str, &str> = HashMap::new();
        match self.backend {
            Backend::SecretService => {
                mods.insert("label", &label);
            }
            Backend::Windows => {
                mods.insert("target", &target);
            }
            Backend::Keyutils | Backend::MacOs => {}
        }
        let mods = (!mods.is_empty()).then_some(&mods);
        self.store.build(service, account, mods)
    }

    fn failed(&self, op: &'static str, service: &str, account: &str, e: &KrError) -> KeychainError {
        let reason = describe(e);
        let lower = reason.to_ascii_lowercase();
        let fix = match self.backend {
            Backend::SecretService if lower.contains("prompt") || lower.contains("locked") => {
                "unlock the keyring (log in to the desktop session, or start gnome-keyring-daemon \
                 with --unlock), or on a headless host set OMAC_KEYRING_BACKEND=keyutils"
            }
            Backend::SecretService => {
                "check that the Secret Service daemon runs, or set OMAC_KEYRING_BACKEND=keyutils"
            }
            Backend::Keyutils => {
                "check `keyctl show @s`; secrets can also come from OMAC_SECRET_<NAME>"
            }
            Backend::MacOs => "unlock the login keychain (Keychain Access)",
            Backend::Windows => "check the Credential Manager",
        };
        KeychainError::Failed {
            backend: self.backend.name(),
            op,
            service: service.to_string(),
            account: account.to_string(),
            reason,
            fix,
        }
    }

    /// The value stored for (`service`, `account`), if any.
    pub fn get(&self, service: &str, account: &str) -> Result<Option<Secret>, KeychainError> {
        let fail = |e: KrError| self.failed("reading", service, account, &e);
        let entry = self.entry(service, account).map_err(fail)?;
        match entry.get_secret() {
            Ok(v) => Ok(Some(Secret::new(v))),
            Err(KrError::NoEntry) => Ok(None),
            Err(KrError::Ambiguous(entries)) => {
                // Several items match (written by several tools): use the first, as go-keyring.
                tracing::warn!(%service, %account, n = entries.len(), "several keychain items match; using the first");
                match entries.first().map(|e| e.get_secret()) {
                    Some(Ok(v)) => Ok(Some(Secret::new(v))),
                    Some(Err(KrError::NoEntry)) | None => Ok(None),
                    Some(Err(e)) => Err(fail(e)),
                }
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Stores `value` for (`service`, `account`), replacing any earlier value.
    pub fn set(&self, service: &str, account: &str, value: &Secret) -> Result<(), KeychainError> {
        let fail = |e: KrError| self.failed("writing", service, account, &e);
        if value.is_empty() {
            return Err(fail(KrError::Invalid("value".into(), "is empty".into())));
        }
        let entry = self.entry(service, account).map_err(fail)?;
        match entry.set_secret(value.expose()) {
            Ok(()) => Ok(()),
            Err(KrError::Ambiguous(entries)) => {
                for e in &entries {
                    e.delete_credential().map_err(fail)?;
                }
                self.entry(service, account)
                    .and_then(|e| e.set_secret(value.expose()))
                    .map_err(fail)
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Deletes (`service`, `account`); returns whether there was something to delete.
    pub fn delete(&self, service: &str, account: &str) -> Result<bool, KeychainError> {
        let fail = |e: KrError| self.failed("deleting", service, account, &e);
        let entry = self.entry(service, account).map_err(fail)?;
        match entry.delete_credential() {
            Ok(()) => Ok(true),
            Err(KrError::NoEntry) => Ok(false),
            Err(KrError::Ambiguous(entries)) => {
                for e in &entries {
                    e.delete_credential().map_err(fail)?;
                }
                Ok(true)
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Reads the probe item: proves the backend answers (absent is fine).
    pub fn ping(&self) -> Result<(), KeychainError> {
        self.get(PROBE_SERVICE, PROBE_ACCOUNT).map(|_| ())
    }
}

/// A keyring error as text that never carries secret bytes.
fn describe(e: &KrError) -> String {
    match e {
        KrError::BadEncoding(_) => "the stored value is not valid UTF-8".into(),
        KrError::BadDataFormat(_, inner) => format!("the stored value has a bad format: {inner}"),
        KrError::Ambiguous(v) => format!("{} items match", v.len()),
        other => other.to_string(),
    }
}

fn open_auto() -> Result<Keychain, KeychainError> {
    #[cfg(target_os = "macos")]
    {
        open_backend(Backend::MacOs).map(|store| Keychain {
            backend: Backend::MacOs,
            store,
            why: "the macOS Keychain".into(),
        })
    }
    #[cfg(windows)]
    {
        open_backend(Backend::Windows).map(|store| Keychain {
            backend: Backend::Windows,
            store,
            why: "the Windows Credential Manager".into(),
        })
    }
    #[cfg(target_os = "linux")]
    {
        match open_backend(Backend::SecretService) {
            Ok(store) => Ok(Keychain {
                backend: Backend::SecretService,
                store,
                why: "a Secret Service answers on the session bus".into(),
            }),
            Err(ss) => {
                let reason = match &ss {
                    KeychainError::Unavailable { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                let store = open_backend(Backend::Keyutils)?;
                Ok(Keychain {
                    backend: Backend::Keyutils,
                    store,
                    why: format!("no Secret Service ({reason}); using the kernel keyring"),
                })
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        Err(KeychainError::Unavailable {
            backend: "auto",
            reason: "omac has no keychain backend for this operating system".into(),
            fix: "run omac on Linux, macOS or Windows".into(),
        })
    }
}

fn not_here(b: Backend) -> KeychainError {
    KeychainError::Unavailable {
        backend: b.name(),
        reason: "it does not exist on this operating system".into(),
        fix: format!("unset {BACKEND_VAR} or choose a backend of this system"),
    }
}

fn open_backend(b: Backend) -> Result<Arc<CredentialStore>, KeychainError> {
    match b {
        #[cfg(target_os = "linux")]
        Backend::SecretService => {
            let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| {
                KeychainError::Unavailable {
                    backend: b.name(),
                    reason: describe(&e),
                    fix: "start a Secret Service (gnome-keyring-daemon, KWallet, KeePassXC) in \
                          your session, or set OMAC_KEYRING_BACKEND=keyutils"
                        .into(),
                }
            })?;
            Ok(store)
        }
        #[cfg(target_os = "linux")]
        Backend::Keyutils => {
            let unavailable = |reason: String| KeychainError::Unavailable {
                backend: b.name(),
                reason,
                fix: "use a Secret Service (OMAC_KEYRING_BACKEND=secret-service), or provide \
                      secrets as OMAC_SECRET_<NAME> variables"
                    .into(),
            };
            let session = crate::secrets::keyutils::ensure_session_keyring()
                .map_err(|e| unavailable(format!("cannot join a session keyring: {e}")))?;
            if session == crate::secrets::keyutils::Session::Joined
                && !crate::secrets::keyutils::persistent_keyring_available()
            {
                return Err(unavailable(
                    "the kernel has no persistent keyrings (CONFIG_PERSISTENT_KEYRINGS), so a \
                     secret would vanish when omac exits"
                        .into(),
                ));
            }
            let store = linux_keyutils_keyring_store::Store::new()
                .map_err(|e| unavailable(describe(&e)))?;
            Ok(store)
        }
        #[cfg(target_os = "macos")]
        Backend::MacOs => apple_native_keyring_store::keychain::Store::new()
            .map(|s| s as Arc<CredentialStore>)
            .map_err(|e| KeychainError::Unavailable {
                backend: b.name(),
                reason: describe(&e),
                fix: "unlock your login keychain".into(),
            }),
        #[cfg(windows)]
        Backend::Windows => windows_native_keyring_store::Store::new()
            .map(|s| s as Arc<CredentialStore>)
            .map_err(|e| KeychainError::Unavailable {
                backend: b.name(),
                reason: describe(&e),
                fix: "check that the Credential Manager service runs".into(),
            }),
        #[allow(unreachable_patterns)]
        other => Err(not_here(other)),
    }
}

/// The notice printed when secrets go to the kernel keyring.
pub fn volatile_notice() -> String {
    let expiry = crate::secrets::keyutils_expiry_text();
    format!(
        "secrets are kept in the Linux kernel keyring: they do not survive a reboot{expiry}. \
         Start a Secret Service (e.g. gnome-keyring) to keep them, or re-provide them with \
         OMAC_SECRET_<NAME> or `omac secrets set`."
    )
}
