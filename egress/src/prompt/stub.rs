//! A prompter answering from a JSON file instead of a dialog (`OMAC_PROMPT_STUB=1` with
//! `OMAC_PROMPT_DECISIONS=<file>`), for tests and demos.
//!
//! The file maps hosts to answers; `"*"` answers for every other host, and keys starting
//! with `@` are options:
//! ```json
//! {
//!   "api.example.com": "allow-session",
//!   "cdn.example.com": {"allow": true, "persist": true, "scope": "suffix"},
//!   "slow.example.com": {"choice": "allow-once", "delay_ms": 1500},
//!   "*": "deny-once",
//!   "@delay_ms": 0,
//!   "@record": "/tmp/prompts.log",
//!   "@available": true
//! }
//! ```
//! An answer is a token (`allow-once`, `allow-session`, `allow-session-suffix`,
//! `allow-permanent`, `allow-permanent-suffix`, and the same with `deny-`), or an object:
//! the Go omac's `{"allow", "persist", "scope"}` (read the same way: persist means
//! permanently), with `"session": true` for a session choice, or `{"choice": TOKEN}`;
//! `delay_ms` delays the answer (to test coalescing and timeouts). `@record` appends one
//! line `HOST:PORT TOKEN` per dialog "shown"; `@available: false` plays a machine without
//! a display. A host with no answer, a missing or malformed file: "Deny once", with a
//! warning, as the Go omac does.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::{AskFuture, Availability, Choice, Lifetime, Prompter, Question};
use crate::pages::{Decision, EntryScope};

/// The file-driven prompter.
#[derive(Debug)]
pub struct StubPrompter {
    file: Option<PathBuf>,
    asked: Mutex<Vec<Question>>,
}

fn read_object(file: &Option<PathBuf>) -> serde_json::Map<String, Value> {
    let Some(path) = file else {
        tracing::warn!("stub prompt: OMAC_PROMPT_DECISIONS is not set; denying every host");
        return serde_json::Map::new();
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                "stub prompt: cannot read decisions file {}: {e}; denying every host",
                path.display()
            );
            return serde_json::Map::new();
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) | Err(_) => {
            tracing::warn!(
                "stub prompt: malformed decisions file {}; denying every host",
                path.display()
            );
            serde_json::Map::new()
        }
    }
}

fn answer(v: &Value) -> (Option<Choice>, u64) {
    match v {
        Value::String(t) => (Choice::from_token(t), 0),
        Value::Object(o) => {
            let o: serde_json::Map<String, Value> = o
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            let delay = o.get("delay_ms").and_then(Value::as_u64).unwrap_or(0);
            if let Some(t) = o.get("choice").and_then(Value::as_str) {
                return (Choice::from_token(t), delay);
            }
            let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
            let scope = match o.get("scope").and_then(Value::as_str) {
                Some("suffix") => EntryScope::Suffix,
                _ => EntryScope::Host,
            };
            let lifetime = if flag("persist") {
                Lifetime::Permanent
            } else if flag("session") {
                Lifetime::Session
            } else {
                Lifetime::Once
            };
            let decision = if flag("allow") {
                Decision::Allow
            } else {
                Decision::Deny
            };
            (
                Some(Choice {
                    decision,
                    lifetime,
                    scope,
                }),
                delay,
            )
        }
        _ => (None, 0),
    }
}

impl StubPrompter {
    /// A stub reading `file` at every question (so a test may change it between requests).
    pub fn from_file(file: Option<PathBuf>) -> StubPrompter {
        StubPrompter {
            file,
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The questions asked so far.
    pub fn asked(&self) -> Vec<Question> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Prompter for StubPrompter {
    fn availability(&self) -> Availability {
        let o = read_object(&self.file);
        match o.get("@available") {
            Some(Value::Bool(false)) => Availability::Unavailable(
                "the stub prompt plays a machine without a display".into(),
            ),
            _ => Availability::Available,
        }
    }

    fn ask<'a>(&'a self, q: &'a Question) -> AskFuture<'a> {
        Box::pin(async move {
            self.asked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(q.clone());
            let o = read_object(&self.file);
            let default_delay = o.get("@delay_ms").and_then(Value::as_u64).unwrap_or(0);
            let entry = o.get(&q.host).or_else(|| o.get("*"));
            let (choice, delay) = entry.map_or((None, 0), answer);
            let choice = choice.unwrap_or_else(|| {
                tracing::warn!("stub prompt: no usable answer for {}; denying once", q.host);
                Choice::DENY_ONCE
            });
            if let Some(path) = o.get("@record").and_then(Value::as_str) {
                let line = format!("{}:{} {}\n", q.host, q.port, choice.token());
                let r = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = r {
                    tracing::warn!("stub prompt: cannot record to {path}: {e}");
                }
            }
            let delay = if delay > 0 { delay } else { default_delay };
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            Ok(choice)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(host: &str) -> Question {
        Question {
            host: host.into(),
            port: 443,
            suffix: omac_bundle::domain::suffix_of(host),
        }
    }

    #[tokio::test]
    async fn tokens_go_objects_wildcard_and_record() {
        let d = tempfile::tempdir().unwrap();
        let rec = d.path().join("rec.log");
        let f = d.path().join("d.json");
        std::fs::write(
            &f,
            serde_json::json!({
                "a.com": "allow-session-suffix",
                "b.com": {"allow": true, "persist": true, "scope": "suffix"},
                "c.com": {"Allow": true},
                "d.com": {"choice": "deny-permanent", "delay_ms": 1},
                "e.com": "nonsense",
                "*": "allow-once",
                "@record": rec.to_str().unwrap(),
            })
            .to_string(),
        )
        .unwrap();
        let s = StubPrompter::from_file(Some(f));
        assert_eq!(s.availability(), Availability::Available);
        let t = |c: Choice| c.token();
        assert_eq!(t(s.ask(&q("a.com")).await.unwrap()), "allow-session-suffix");
        assert_eq!(
            t(s.ask(&q("b.com")).await.unwrap()),
            "allow-permanent-suffix"
        );
        assert_eq!(t(s.ask(&q("c.com")).await.unwrap()), "allow-once");
        assert_eq!(t(s.ask(&q("d.com")).await.unwrap()), "deny-permanent");
        assert_eq!(t(s.ask(&q("e.com")).await.unwrap()), "deny-once");
        assert_eq!(t(s.ask(&q("z.com")).await.unwrap()), "allow-once");
        assert_eq!(s.asked().len(), 6);
        let log = std::fs::read_to_string(rec).unwrap();
        assert_eq!(log.lines().next(), Some("a.com:443 allow-session-suffix"));
        assert_eq!(log.lines().count(), 6);
    }

    #[tokio::test]
    async fn missing_file_denies_and_unavailable_is_playable() {
        let s = StubPrompter::from_file(None);
        assert_eq!(s.ask(&q("a.com")).await.unwrap(), Choice::DENY_ONCE);
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("d.json");
        std::fs::write(&f, r#"{"@available": false}"#).unwrap();
        let s = StubPrompter::from_file(Some(f));
        assert!(matches!(s.availability(), Availability::Unavailable(_)));
    }
}
