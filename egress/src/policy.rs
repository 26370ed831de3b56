//! The decision for one destination, in the order of the Go omac (reference §4.7) with the
//! additions of issue 6:
//!
//! 1. hard deny by name and by literal address (metadata, loopback, link-local,
//!    unspecified, multicast/broadcast, reserved, the host's own addresses, private ranges
//!    unless `network.allow_private` lists them, and the IPv6 forms embedding those);
//! 2. the rules, by name: learned deny, session deny, `deny_domain`, `allow_domain`,
//!    session allow, learned allow (a refusal here needs no DNS lookup);
//! 3. undecided hosts whose default is a refusal (prompt off with an allowlist; no display
//!    with `on_unavailable: deny`) are refused here, before any DNS lookup;
//! 4. resolve once and check every address against the hard deny; the connection may only
//!    go to these addresses (no DNS rebinding); a name that does not resolve is refused;
//! 5. undecided: the prompt (one dialog per host however many requests wait, one dialog on
//!    screen at a time), or with the prompt off and an empty `allow_domain`: allow.
//!
//! Through an upstream proxy (not bypassed by `no_proxy`) the upstream resolves, as in the
//! Go omac, and nothing is pinned; names and literal addresses are still checked, and so
//! is what the host's DNS answers for the name when it answers (a name resolving to
//! loopback or metadata here is refused rather than handed to the upstream).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omac_bundle::domain::{self, DomainRule};
use omac_bundle::ext::NetworkPolicy;
use tokio::sync::watch;

use crate::addr::{self, Class, Guard};
use crate::audit::{Audit, NetDecision, Scope, Source};
use crate::ifaddrs::OwnAddrs;
use crate::pages::{self, Decision, EntryScope, Pages};
use crate::profile_ref::ProfileRef;
use crate::prompt::{Availability, Choice, Lifetime, Prompter, Question};
use crate::resolve::Resolver;
use crate::upstream::Upstream;
use crate::verdict::{Denial, Rule};

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the check of a name sent to the upstream proxy waits for the host's DNS
/// (no answer in time: the upstream decides).
const UPSTREAM_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where an allowed connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To these addresses, and no other (resolved once, checked, pinned).
    Direct(Vec<SocketAddr>),
    /// Through the upstream proxy, which resolves the name.
    Upstream(Arc<Upstream>),
}

#[derive(Debug, Clone)]
enum Outcome {
    Chose(Choice, bool),
    /// An earlier dialog's session or permanent choice covers the host: the rules decide.
    Covered,
    TimedOut(u64),
    Failed(String),
}

enum Tentative {
    Allow(Source, Scope, String),
    Deny(Denial),
    Undecided,
}

/// The policy of one session.
pub struct Policy {
    allow: Vec<DomainRule>,
    deny: Vec<(DomainRule, String)>,
    allow_list_empty: bool,
    prompt_enabled: bool,
    prompt_timeout: u64,
    allow_when_unavailable: bool,
    guard: Guard,
    own: OwnAddrs,
    resolver: Arc<dyn Resolver>,
    pages: Arc<Pages>,
    session: Mutex<Vec<(String, EntryScope, Decision)>>,
    prompter: Arc<dyn Prompter>,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
    dialog: tokio::sync::Semaphore,
    audit: Arc<dyn Audit>,
    upstream: Option<Arc<Upstream>>,
    profile: ProfileRef,
}

/// The parts a [`Policy`] is made of.
pub struct Parts {
    /// `omac.json`'s `network`.
    pub network: NetworkPolicy,
    /// The session's profile (for the pages file and the fixes in refusals).
    pub profile: ProfileRef,
    /// Learned decisions.
    pub pages: Pages,
    /// The dialog backend.
    pub prompter: Arc<dyn Prompter>,
    /// Name resolution.
    pub resolver: Arc<dyn Resolver>,
    /// Where decisions are reported.
    pub audit: Arc<dyn Audit>,
    /// The upstream proxy, if any.
    pub upstream: Option<Upstream>,
    /// The hard-deny checks that need configuration.
    pub guard: Guard,
}

fn is_numeric_name(host: &str) -> bool {
    // inet_aton reads "2130706433", "0x7f.1" or "127.1" as addresses; a real DNS name never
    // ends in a numeric label, so such names are refused rather than resolved.
    host.rsplit('.').next().is_some_and(|last| {
        !last.is_empty()
            && (last.chars().all(|c| c.is_ascii_digit())
                || last.to_ascii_lowercase().starts_with("0x"))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Policy {
    /// Builds the policy from its parts.
    pub fn new(p: Parts) -> Policy {
        let n = &p.network;
        Policy {
            allow: n
                .allow_domains
                .iter()
                .filter_map(|d| domain::parse_rule(d).ok())
                .collect(),
            deny: n
                .deny_domains
                .iter()
                .filter_map(|d| domain::parse_rule(d).ok().map(|r| (r, d.clone())))
                .collect(),
            allow_list_empty: n.allow_domains.is_empty(),
            prompt_enabled: n.prompt.enabled,
            prompt_timeout: if n.prompt.timeout_secs == 0 {
                60
            } else {
                u64::from(n.prompt.timeout_secs)
            },
            allow_when_unavailable: n.prompt.on_unavailable == "allow",
            guard: p.guard,
            own: OwnAddrs::default(),
            resolver: p.resolver,
            pages: Arc::new(p.pages),
            session: Mutex::new(Vec::new()),
            prompter: p.prompter,
            inflight: Mutex::new(HashMap::new()),
            dialog: tokio::sync::Semaphore::new(1),
            audit: p.audit,
            upstream: p.upstream.map(Arc::new),
            profile: p.profile,
        }
    }

    /// The learned decisions.
    pub fn pages(&self) -> &Pages {
        &self.pages
    }

    /// The resolver (the upstream proxy's own name is resolved with it too).
    pub fn resolver(&self) -> &dyn Resolver {
        self.resolver.as_ref()
    }

    fn denial(&self, host: &str, port: u16, rule: Rule, source: Source, scope: Scope) -> Denial {
        let where_ = self.profile.where_to_edit();
        let allow_line = format!("add \"{host}\" to network.allow_domain {where_}");
        let pages = self
            .pages
            .path()
            .map_or("the learned decisions".to_string(), |p| {
                p.display().to_string()
            });
        let (reason, fix) = match &rule {
            Rule::Hard(class, ip) => {
                let at = ip.map_or(String::new(), |ip| {
                    if ip.to_string() == host {
                        String::new()
                    } else {
                        format!(" (it resolves to {ip})")
                    }
                });
                match class {
                    Class::Metadata => (
                        format!("{host}{at} is a cloud metadata endpoint, which hands out this machine's credentials"),
                        "nothing will: metadata endpoints are never reachable from the sandbox".to_string(),
                    ),
                    Class::Loopback | Class::HostAddress => (
                        format!("{host}{at} is {}: the host's own services", class.label()),
                        "nothing through the proxy: it never connects to the host itself. A server started inside the sandbox is reached directly on the sandbox's own localhost; a host service needs its port in network.open_port".to_string(),
                    ),
                    Class::Private => {
                        let ip = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                        (
                            format!("{host}{at} is a private address, refused unless the profile allows its range"),
                            format!("add \"{}\" (or its whole range) to network.allow_private {where_}", Guard::suggestion(ip)),
                        )
                    }
                    _ => (
                        format!("{host}{at} is a {} address", class.label()),
                        format!("nothing will: {} addresses are never reachable from the sandbox", class.label()),
                    ),
                }
            }
            Rule::Dns(e) => (
                format!("{host} does not resolve ({e})"),
                "check the name; omac resolves names on the host, so the host's DNS must know it".to_string(),
            ),
            Rule::Learned(h, suffix) => (
                format!(
                    "a permanent deny for {}{h} is recorded in {pages}",
                    if *suffix { "*." } else { "" }
                ),
                format!("remove the entry {{\"host\": \"{h}\", ...}} from {pages}"),
            ),
            Rule::Session(h, suffix) => (
                format!(
                    "{}{h} was denied for this session in the prompt",
                    if *suffix { "*." } else { "" }
                ),
                format!("start a new session to be asked again, or {allow_line}"),
            ),
            Rule::DenyDomain(entry) => (
                format!("network.deny_domain lists \"{entry}\""),
                format!("remove \"{entry}\" from network.deny_domain {where_}"),
            ),
            Rule::NotInAllowlist => (
                "network.allow_domain does not list it and the prompt is off".to_string(),
                allow_line,
            ),
            Rule::PromptDeclined(how) => (format!("denied in the prompt ({how})"), {
                if *how == "once" {
                    format!("ask again and choose Allow, or {allow_line}")
                } else {
                    allow_line
                }
            }),
            Rule::PromptTimeout(s) => (
                format!("the prompt got no answer within {s} s"),
                format!("answer the dialog in time (network.network_prompt.prompt_timeout_secs), or {allow_line}"),
            ),
            Rule::PromptFailed(e) => (format!("the prompt failed: {e}"), allow_line),
            Rule::NoDisplay(why) => (
                format!("no dialog can be shown ({why}) and network.network_prompt.on_unavailable is \"deny\""),
                allow_line,
            ),
            Rule::InvalidTarget(why) => (
                why.clone(),
                "ask for HOST:PORT with a valid host name or address and a port from 1 to 65535".to_string(),
            ),
            Rule::Unsupported(what) => (
                format!("{what} is not carried by omac's egress proxy"),
                "nothing will: only TCP connections leave the sandbox (CONNECT, http:// forwarding, SOCKS5 CONNECT); send https:// through CONNECT (HTTPS_PROXY)".to_string(),
            ),
        };
        Denial {
            host: host.to_string(),
            port,
            rule,
            reason,
            fix,
            source,
            scope,
            persisted: false,
        }
    }

    fn hard(&self, host: &str, port: u16, class: Class, ip: Option<IpAddr>) -> Denial {
        self.denial(
            host,
            port,
            Rule::Hard(class, ip),
            Source::HardDeny,
            Scope::Policy,
        )
    }

    fn session_lookup(&self, host: &str) -> Option<(Decision, String, EntryScope)> {
        let s = lock(&self.session);
        pages::decide(s.iter().map(|(h, sc, d)| (h.as_str(), *sc, *d)), host)
    }

    fn remember(&self, host: &str, choice: Choice) {
        let key = match choice.scope {
            EntryScope::Host => host.to_string(),
            EntryScope::Suffix => domain::suffix_of(host),
        };
        let mut s = lock(&self.session);
        s.retain(|(h, sc, _)| !(h == &key && *sc == choice.scope));
        s.push((key, choice.scope, choice.decision));
    }

    fn rules(&self, host: &str, port: u16) -> Tentative {
        let learned = self.pages.lookup(host);
        if let Some((Decision::Deny, h, sc)) = &learned {
            return Tentative::Deny(self.denial(
                host,
                port,
                Rule::Learned(h.clone(), *sc == EntryScope::Suffix),
                Source::Learned,
                Scope::Permanent,
            ));
        }
        let session = self.session_lookup(host);
        if let Some((Decision::Deny, h, sc)) = &session {
            return Tentative::Deny(self.denial(
                host,
                port,
                Rule::Session(h.clone(), *sc == EntryScope::Suffix),
                Source::Session,
                Scope::Session,
            ));
        }
        if let Some((_, entry)) = self.deny.iter().find(|(r, _)| r.matches(host, port)) {
            return Tentative::Deny(self.denial(
                host,
                port,
                Rule::DenyDomain(entry.clone()),
                Source::Blocklist,
                Scope::Policy,
            ));
        }
        if self.allow.iter().any(|r| r.matches(host, port)) {
            return Tentative::Allow(Source::Allowlist, Scope::Policy, "allow_domain".into());
        }
        if session.is_some() {
            return Tentative::Allow(Source::Session, Scope::Session, "session".into());
        }
        if learned.is_some() {
            return Tentative::Allow(Source::Learned, Scope::Permanent, "learned".into());
        }
        Tentative::Undecided
    }

    fn report(
        &self,
        host: &str,
        port: u16,
        via: &'static str,
        r: &Result<(Route, Source, Scope, bool, String), Denial>,
    ) {
        let e = match r {
            Ok((_, source, scope, persisted, rule)) => NetDecision {
                event: "net.decision",
                host: host.to_string(),
                port,
                allow: true,
                scope: *scope,
                source: *source,
                persisted: *persisted,
                rule: rule.clone(),
                via,
            },
            Err(d) => {
                tracing::info!("{}", d.summary());
                NetDecision {
                    event: "net.decision",
                    host: host.to_string(),
                    port,
                    allow: false,
                    scope: d.scope,
                    source: d.source,
                    persisted: d.persisted,
                    rule: d.rule.name().to_string(),
                    via,
                }
            }
        };
        self.audit.net_decision(&e);
    }

    /// Refuses a request the proxy does not carry (`what`: "SOCKS5 UDP ASSOCIATE", ...)
    /// before any policy step, and reports it like every other decision.
    pub fn refuse_unsupported(
        &self,
        host: &str,
        port: u16,
        via: &'static str,
        what: &str,
    ) -> Denial {
        let host = domain::normalize_host(host.trim_start_matches('[').trim_end_matches(']'));
        let d = self.denial(
            &host,
            port,
            Rule::Unsupported(what.to_string()),
            Source::Request,
            Scope::Policy,
        );
        self.report(&host, port, via, &Err(d.clone()));
        d
    }

    /// Decides about `host:port` (`via` names the protocol for the audit event) and
    /// reports the decision; on success, where to connect.
    pub async fn check(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        via: &'static str,
    ) -> Result<Route, Denial> {
        let host = domain::normalize_host(host.trim_start_matches('[').trim_end_matches(']'));
        let r = self.decide(&host, port).await;
        self.report(&host, port, via, &r);
        r.map(|(route, ..)| route)
    }

    async fn decide(
        self: &Arc<Self>,
        host: &str,
        port: u16,
    ) -> Result<(Route, Source, Scope, bool, String), Denial> {
        let literal: Option<IpAddr> = host.parse().ok();
        if port == 0 || host.is_empty() {
            return Err(self.denial(
                host,
                port,
                Rule::InvalidTarget("no host or port 0".into()),
                Source::Request,
                Scope::Policy,
            ));
        }
        if literal.is_none() && (!domain::valid_dns_name(host) || is_numeric_name(host)) {
            return Err(self.denial(
                host,
                port,
                Rule::InvalidTarget(format!("{host:?} is neither a host name nor an IP address")),
                Source::Request,
                Scope::Policy,
            ));
        }
        if let Some(class) = addr::class_of_name(host) {
            return Err(self.hard(host, port, class, None));
        }
        if let Some(ip) = literal {
            if let Some(class) = self.guard.check(ip, port, &self.own.get()) {
                return Err(self.hard(host, port, class, Some(ip)));
            }
        }
        let tentative = self.rules(host, port);
        if let Tentative::Deny(d) = tentative {
            return Err(d);
        }
        // Refusals that no address can change are given before any DNS lookup.
        let mut unavailable = None;
        if let Tentative::Undecided = tentative {
            if !self.prompt_enabled && !self.allow_list_empty {
                return Err(self.denial(
                    host,
                    port,
                    Rule::NotInAllowlist,
                    Source::Default,
                    Scope::Policy,
                ));
            }
            if self.prompt_enabled {
                if let Availability::Unavailable(why) = self.prompter.availability() {
                    if !self.allow_when_unavailable {
                        return Err(self.denial(
                            host,
                            port,
                            Rule::NoDisplay(why),
                            Source::Unavailable,
                            Scope::Once,
                        ));
                    }
                    unavailable = Some(why);
                }
            }
        }
        let route = match (&self.upstream, literal) {
            (Some(up), _) if up.applies(host, port) => {
                // The upstream resolves the name, but where the host's DNS says it is a
                // forbidden address (a public name pointing at 127.0.0.1, the host's own
                // name in /etc/hosts), the upstream would likely dial it too: on this
                // machine, for an upstream on loopback. A name the host cannot resolve
                // (usual behind a corporate proxy) goes on to the upstream.
                if literal.is_none() {
                    if let Ok(Ok(ips)) =
                        tokio::time::timeout(UPSTREAM_CHECK_TIMEOUT, self.resolver.resolve(host))
                            .await
                    {
                        let own = self.own.get();
                        for ip in &ips {
                            if let Some(class) = self.guard.check(*ip, port, &own) {
                                return Err(self.hard(host, port, class, Some(*ip)));
                            }
                        }
                    }
                }
                Route::Upstream(up.clone())
            }
            (_, Some(ip)) => Route::Direct(vec![SocketAddr::new(ip, port)]),
            (_, None) => {
                let ips = match tokio::time::timeout(RESOLVE_TIMEOUT, self.resolver.resolve(host))
                    .await
                {
                    Ok(Ok(ips)) if !ips.is_empty() => ips,
                    Ok(Ok(_)) => {
                        return Err(self.denial(
                            host,
                            port,
                            Rule::Dns("no address".into()),
                            Source::Dns,
                            Scope::Policy,
                        ))
                    }
                    Ok(Err(e)) => {
                        return Err(self.denial(
                            host,
                            port,
                            Rule::Dns(e.to_string()),
                            Source::Dns,
                            Scope::Policy,
                        ))
                    }
                    Err(_) => {
                        return Err(self.denial(
                            host,
                            port,
                            Rule::Dns(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())),
                            Source::Dns,
                            Scope::Policy,
                        ))
                    }
                };
                let own = self.own.get();
                for ip in &ips {
                    if let Some(class) = self.guard.check(*ip, port, &own) {
                        return Err(self.hard(host, port, class, Some(*ip)));
                    }
                }
                Route::Direct(
                    ips.into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect(),
                )
            }
        };
        match tentative {
            Tentative::Allow(source, scope, rule) => {
                return Ok((route, source, scope, false, rule))
            }
            Tentative::Deny(_) => unreachable!("returned above"),
            Tentative::Undecided => {}
        }
        if !self.prompt_enabled {
            // The allowlist is empty here (a non-empty one refused above): pure blocklist mode.
            return Ok((
                route,
                Source::Default,
                Scope::Policy,
                false,
                "default allow (no allowlist)".into(),
            ));
        }
        if let Some(why) = unavailable {
            tracing::info!(
                "{host}:{port} allowed without a prompt ({why}): on_unavailable is \"allow\""
            );
            return Ok((
                route,
                Source::Unavailable,
                Scope::Once,
                false,
                "on_unavailable allow".into(),
            ));
        }
        match self.prompt(host, port).await {
            Outcome::Chose(choice, persisted) => {
                let scope = match choice.lifetime {
                    Lifetime::Once => Scope::Once,
                    Lifetime::Session => Scope::Session,
                    Lifetime::Permanent => Scope::Permanent,
                };
                match choice.decision {
                    Decision::Allow => {
                        Ok((route, Source::Prompt, scope, persisted, "prompt".into()))
                    }
                    Decision::Deny => {
                        let how = match choice.lifetime {
                            Lifetime::Once => "once",
                            Lifetime::Session => "for this session",
                            Lifetime::Permanent => "permanently",
                        };
                        let mut d = self.denial(
                            host,
                            port,
                            Rule::PromptDeclined(how),
                            Source::Prompt,
                            scope,
                        );
                        d.persisted = persisted;
                        Err(d)
                    }
                }
            }
            Outcome::Covered => match self.rules(host, port) {
                Tentative::Allow(source, scope, rule) => Ok((route, source, scope, false, rule)),
                Tentative::Deny(d) => Err(d),
                Tentative::Undecided => Err(self.denial(
                    host,
                    port,
                    Rule::PromptFailed("the earlier choice no longer applies".into()),
                    Source::Prompt,
                    Scope::Once,
                )),
            },
            Outcome::TimedOut(s) => Err(self.denial(
                host,
                port,
                Rule::PromptTimeout(s),
                Source::Prompt,
                Scope::Once,
            )),
            Outcome::Failed(e) => Err(self.denial(
                host,
                port,
                Rule::PromptFailed(e),
                Source::Prompt,
                Scope::Once,
            )),
        }
    }

    /// One dialog per host: the first request opens it, the others wait for its answer.
    async fn prompt(self: &Arc<Self>, host: &str, port: u16) -> Outcome {
        let mut rx = {
            let mut map = lock(&self.inflight);
            match map.get(host) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(host.to_string(), rx.clone());
                    let me = self.clone();
                    let q = Question {
                        host: host.to_string(),
                        port,
                        suffix: domain::suffix_of(host),
                    };
                    tokio::spawn(async move {
                        let out = me.ask(&q).await;
                        let _ = tx.send(Some(out));
                        lock(&me.inflight).remove(&q.host);
                    });
                    rx
                }
            }
        };
        loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                return o;
            }
            if rx.changed().await.is_err() {
                return Outcome::Failed("the dialog task ended without an answer".into());
            }
        }
    }

    async fn ask(self: &Arc<Self>, q: &Question) -> Outcome {
        // One dialog on screen at a time; the timeout runs from when it is shown.
        let Ok(_shown) = self.dialog.acquire().await else {
            return Outcome::Failed("the prompt is shut down".into());
        };
        // A choice made in the dialog before this one may already cover this host.
        if self.session_lookup(&q.host).is_some() || self.pages.lookup(&q.host).is_some() {
            return Outcome::Covered;
        }
        let asked = tokio::time::timeout(
            Duration::from_secs(self.prompt_timeout),
            self.prompter.ask(q),
        )
        .await;
        let choice = match asked {
            Err(_) => return Outcome::TimedOut(self.prompt_timeout),
            Ok(Err(e)) => return Outcome::Failed(e),
            Ok(Ok(c)) => c,
        };
        match choice.lifetime {
            Lifetime::Once => Outcome::Chose(choice, false),
            Lifetime::Session => {
                self.remember(&q.host, choice);
                Outcome::Chose(choice, false)
            }
            Lifetime::Permanent => {
                let key = match choice.scope {
                    EntryScope::Host => q.host.clone(),
                    EntryScope::Suffix => q.suffix.clone(),
                };
                let pages = self.pages.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    pages.save(&key, choice.scope, choice.decision)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
                match saved {
                    Ok(()) => Outcome::Chose(choice, true),
                    Err(e) => {
                        tracing::error!(
                            "the permanent choice for {} holds for this session only: {e}",
                            q.host
                        );
                        self.remember(&q.host, choice);
                        Outcome::Chose(choice, false)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_names() {
        for n in ["2130706433", "0x7f000001", "127.1", "a.0x1", "1.2.3"] {
            assert!(is_numeric_name(n), "{n}");
        }
        for n in ["github.com", "1password.com", "x1.io", "a.b0"] {
            assert!(!is_numeric_name(n), "{n}");
        }
    }
}
