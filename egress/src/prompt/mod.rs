//! Asking the user about a host no rule decides: the dialog backends (zenity, kdialog,
//! osascript), a stub driven by a file for tests, and the ten choices of the Go omac
//! (allow or deny × once, this session, permanently × this host or its suffix), with
//! "Deny once" preselected. ("Explain more" is dropped: the 403 body explains.)

pub mod dialog;
pub mod stub;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::pages::{Decision, EntryScope};

/// What the user is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The host (lower case).
    pub host: String,
    /// The port.
    pub port: u16,
    /// What a "suffix" choice covers (`github.com` for `api.github.com`).
    pub suffix: String,
}

/// How long a choice lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifetime {
    /// This request (and those that shared its dialog).
    Once,
    /// Until the session ends.
    Session,
    /// Saved in the profile's `.pages.json`.
    Permanent,
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Choice {
    /// Allow or deny.
    pub decision: Decision,
    /// How long it lasts.
    pub lifetime: Lifetime,
    /// This host, or the suffix (ignored for `Once`).
    pub scope: EntryScope,
}

impl Choice {
    /// "Deny once": the preselected answer, and what a cancelled dialog means.
    pub const DENY_ONCE: Choice = Choice {
        decision: Decision::Deny,
        lifetime: Lifetime::Once,
        scope: EntryScope::Host,
    };

    /// The ten choices, in the order the dialog lists them.
    pub fn all() -> [Choice; 10] {
        let mut out = [Choice::DENY_ONCE; 10];
        let mut i = 0;
        for decision in [Decision::Allow, Decision::Deny] {
            for (lifetime, scope) in [
                (Lifetime::Once, EntryScope::Host),
                (Lifetime::Session, EntryScope::Host),
                (Lifetime::Session, EntryScope::Suffix),
                (Lifetime::Permanent, EntryScope::Host),
                (Lifetime::Permanent, EntryScope::Suffix),
            ] {
                out[i] = Choice {
                    decision,
                    lifetime,
                    scope,
                };
                i += 1;
            }
        }
        out
    }

    /// The label the dialog shows (`Allow for this session (*.github.com)`).
    pub fn label(&self, suffix: &str) -> String {
        let verb = match self.decision {
            Decision::Allow => "Allow",
            Decision::Deny => "Deny",
        };
        let what = match self.scope {
            EntryScope::Host => "this host".to_string(),
            EntryScope::Suffix => format!("*.{suffix}"),
        };
        match self.lifetime {
            Lifetime::Once => format!("{verb} once"),
            Lifetime::Session => format!("{verb} for this session ({what})"),
            Lifetime::Permanent => format!("{verb} permanently ({what})"),
        }
    }

    /// A short stable token (`allow-session-suffix`), used by the stub's file and tags.
    pub fn token(&self) -> String {
        let d = match self.decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        };
        let l = match self.lifetime {
            Lifetime::Once => return format!("{d}-once"),
            Lifetime::Session => "session",
            Lifetime::Permanent => "permanent",
        };
        match self.scope {
            EntryScope::Host => format!("{d}-{l}"),
            EntryScope::Suffix => format!("{d}-{l}-suffix"),
        }
    }

    /// Reads a [`token`](Choice::token).
    pub fn from_token(t: &str) -> Option<Choice> {
        Choice::all().into_iter().find(|c| c.token() == t.trim())
    }

    /// Reads a [`label`](Choice::label) as a dialog printed it.
    pub fn from_label(l: &str, suffix: &str) -> Option<Choice> {
        Choice::all()
            .into_iter()
            .find(|c| c.label(suffix) == l.trim())
    }
}

/// Whether dialogs can be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// A dialog can be shown.
    Available,
    /// No dialog can be shown, and why (`no DISPLAY or WAYLAND_DISPLAY`, `CI is set`...).
    Unavailable(String),
}

/// The future [`Prompter::ask`] returns: the choice, or why the dialog failed.
pub type AskFuture<'a> = Pin<Box<dyn Future<Output = Result<Choice, String>> + Send + 'a>>;

/// Shows one question and returns the answer. The proxy applies the timeout (dropping the
/// future must close the dialog) and shares one question among concurrent requests.
pub trait Prompter: Send + Sync + 'static {
    /// Whether a dialog can be shown now.
    fn availability(&self) -> Availability;
    /// Asks; an error (the dialog crashed) counts as a refusal.
    fn ask<'a>(&'a self, q: &'a Question) -> AskFuture<'a>;
}

/// Whether an environment value means "yes" (`1`, `true`, `yes`, `on`).
pub fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The prompter for an environment: the stub when `OMAC_PROMPT_STUB` is set (reading
/// `OMAC_PROMPT_DECISIONS`), otherwise the platform's dialogs.
pub fn from_env(env: &HashMap<String, String>) -> Arc<dyn Prompter> {
    if truthy(env.get("OMAC_PROMPT_STUB")) {
        let file = env
            .get("OMAC_PROMPT_DECISIONS")
            .map(std::path::PathBuf::from);
        return Arc::new(stub::StubPrompter::from_file(file));
    }
    Arc::new(dialog::DialogPrompter::from_env(env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_tokens_round_trip() {
        let all = Choice::all();
        assert_eq!(all[0].label("github.com"), "Allow once");
        assert_eq!(
            all[2].label("github.com"),
            "Allow for this session (*.github.com)"
        );
        assert_eq!(all[8].label("x"), "Deny permanently (this host)");
        assert_eq!(all[5], Choice::DENY_ONCE);
        for c in all {
            assert_eq!(Choice::from_token(&c.token()), Some(c));
            assert_eq!(Choice::from_label(&c.label("a.b"), "a.b"), Some(c));
        }
        assert_eq!(Choice::from_token("maybe"), None);
    }
}
