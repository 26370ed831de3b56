//! The audit hook: every decision is reported as a `net.decision` event. Writing the audit
//! log is the session's business; the proxy only calls the hook.

use std::sync::Mutex;

use serde::Serialize;

/// Who or what decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The user, in a dialog.
    Prompt,
    /// A permanent decision in the profile's `.pages.json`.
    Learned,
    /// `network.allow_domain`.
    Allowlist,
    /// `network.deny_domain`.
    Blocklist,
    /// No dialog could be shown; `network_prompt.on_unavailable` decided.
    Unavailable,
    /// The hard deny (metadata, loopback, private, ...).
    HardDeny,
    /// The name did not resolve.
    Dns,
    /// No rule matched and the prompt is off.
    Default,
    /// A decision taken earlier in this session.
    Session,
    /// The request itself was malformed (bad host, bad port).
    Request,
}

/// How far a decision reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// This request only (and the requests that shared its dialog).
    Once,
    /// Until the session ends.
    Session,
    /// Saved in the profile's `.pages.json`.
    Permanent,
    /// Decided by the profile's rules or the hard deny.
    Policy,
}

/// One `net.decision` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetDecision {
    /// The event name, always `net.decision`.
    pub event: &'static str,
    /// The host asked for (lower case, IPv6 without brackets).
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// Whether the connection may proceed.
    pub allow: bool,
    /// How far the decision reaches.
    pub scope: Scope,
    /// Who decided.
    pub source: Source,
    /// Whether a permanent choice was written to `.pages.json`.
    pub persisted: bool,
    /// The rule, in the words of the refusal (`loopback`, `deny_domain`, `allow_domain`...).
    pub rule: String,
    /// `http-connect`, `http-forward` or `socks5`.
    pub via: &'static str,
}

/// Receives the decisions of a proxy.
pub trait Audit: Send + Sync + 'static {
    /// Called once per decided request, after the decision.
    fn net_decision(&self, event: &NetDecision);
}

/// An audit hook that only logs (at debug level).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogAudit;

impl Audit for LogAudit {
    fn net_decision(&self, e: &NetDecision) {
        tracing::debug!(
            host = %e.host, port = e.port, allow = e.allow, scope = ?e.scope,
            source = ?e.source, persisted = e.persisted, rule = %e.rule, "net.decision"
        );
    }
}

/// An audit hook that keeps every event in memory (tests, `omac` diagnostics).
#[derive(Debug, Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<NetDecision>>,
}

impl MemoryAudit {
    /// The events so far.
    pub fn events(&self) -> Vec<NetDecision> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Audit for MemoryAudit {
    fn net_decision(&self, e: &NetDecision) {
        LogAudit.net_decision(e);
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
    }
}

impl<F: Fn(&NetDecision) + Send + Sync + 'static> Audit for F {
    fn net_decision(&self, e: &NetDecision) {
        self(e)
    }
}
