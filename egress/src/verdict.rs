//! Refusals and their explanations: which host, which rule, and the exact profile line or
//! action that would allow it. HTTP clients get them as the body of a 403 (header
//! `X-Omac-Sandbox: denied`); SOCKS5 clients get a reply code and the log gets the text.

use std::net::IpAddr;

use crate::addr::Class;
use crate::audit::{Scope, Source};

/// The rule that refused a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The hard deny, with the address that triggered it (`None` for a name).
    Hard(Class, Option<IpAddr>),
    /// The name did not resolve.
    Dns(String),
    /// A permanent deny in `.pages.json` (its host and whether it covers subdomains).
    Learned(String, bool),
    /// A deny chosen earlier in this session.
    Session(String, bool),
    /// `network.deny_domain` (the entry that matched).
    DenyDomain(String),
    /// Not in `network.allow_domain`, and the prompt is off.
    NotInAllowlist,
    /// The user chose to deny (once, for the session, or permanently).
    PromptDeclined(&'static str),
    /// The dialog got no answer in time.
    PromptTimeout(u64),
    /// The dialog failed.
    PromptFailed(String),
    /// No dialog can be shown and `on_unavailable` is `deny`.
    NoDisplay(String),
    /// The host or port is not valid.
    InvalidTarget(String),
    /// A request the proxy does not carry (SOCKS5 BIND or UDP ASSOCIATE, `https://` or
    /// another scheme to forward), named.
    Unsupported(String),
}

impl Rule {
    /// The rule's short name, as the audit event and the `X-Omac-Rule` header give it.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Hard(Class::Metadata, _) => "metadata",
            Rule::Hard(Class::Loopback, _) => "loopback",
            Rule::Hard(Class::LinkLocal, _) => "link-local",
            Rule::Hard(Class::Unspecified, _) => "unspecified",
            Rule::Hard(Class::Multicast, _) => "multicast",
            Rule::Hard(Class::Reserved, _) => "reserved",
            Rule::Hard(Class::HostAddress, _) => "host-address",
            Rule::Hard(Class::Private, _) => "private",
            Rule::Dns(_) => "dns failure",
            Rule::Learned(..) => "learned",
            Rule::Session(..) => "session",
            Rule::DenyDomain(_) => "deny_domain",
            Rule::NotInAllowlist => "not in allowlist",
            Rule::PromptDeclined(_) => "prompt declined",
            Rule::PromptTimeout(_) => "prompt timeout",
            Rule::PromptFailed(_) => "prompt failed",
            Rule::NoDisplay(_) => "no display",
            Rule::InvalidTarget(_) => "invalid target",
            Rule::Unsupported(_) => "unsupported",
        }
    }
}

/// One refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The host asked for.
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// The rule.
    pub rule: Rule,
    /// What it means, in a sentence.
    pub reason: String,
    /// What would allow it (a profile line, a file to edit), or why nothing will.
    pub fix: String,
    /// Who decided (for the audit event).
    pub source: Source,
    /// How far the decision reaches (for the audit event).
    pub scope: Scope,
    /// Whether a permanent choice was saved.
    pub persisted: bool,
}

impl Denial {
    /// The target as `host:port` (IPv6 in brackets).
    pub fn target(&self) -> String {
        crate::upstream::Upstream::authority(&self.host, self.port)
    }

    /// The plain-text body of the 403 (and the log line of a SOCKS5 refusal).
    pub fn body(&self) -> String {
        format!(
            "omac sandbox: the connection to {} was refused.\nrule: {}: {}\nto allow it: {}\n",
            self.target(),
            self.rule.name(),
            self.reason,
            self.fix
        )
    }

    /// One line for headers and logs.
    pub fn summary(&self) -> String {
        format!(
            "{} refused ({}): {}",
            self.target(),
            self.rule.name(),
            self.reason
        )
    }

    /// The SOCKS5 reply code (RFC 1928): 0x02 "not allowed by ruleset" for policy
    /// refusals, 0x04 "host unreachable" for a name that does not resolve.
    pub fn socks_code(&self) -> u8 {
        match self.rule {
            Rule::Dns(_) => 0x04,
            Rule::InvalidTarget(_) => 0x01,
            Rule::Unsupported(_) => 0x07,
            _ => 0x02,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_names_host_rule_and_fix() {
        let d = Denial {
            host: "::1".into(),
            port: 443,
            rule: Rule::Hard(Class::Loopback, Some("::1".parse().unwrap())),
            reason: "r".into(),
            fix: "f".into(),
            source: Source::HardDeny,
            scope: Scope::Policy,
            persisted: false,
        };
        assert_eq!(
            d.body(),
            "omac sandbox: the connection to [::1]:443 was refused.\nrule: loopback: r\nto allow it: f\n"
        );
        assert_eq!(d.socks_code(), 2);
    }
}
