//! `omac bundle diff A B`: what B allows that A does not, what A allows that B does not,
//! and every other difference, by the categories of `explain`.
//!
//! Both bundles are explained first; the comparison runs on the two [`Explanation`]s, so
//! it judges effects (a path readable, a syscall refused) rather than spellings. A path
//! counts as newly readable or writable only when no path of the other bundle with the same
//! right contains it. Whatever the categories miss is still caught: when they find nothing
//! but the files differ, the differing JSON paths are listed as other differences.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::explain::{self, text::list, Explanation, PathGrant};
use crate::ext::ANNOTATION;
use crate::load::Loaded;

/// Version of the diff's JSON layout.
pub const FORMAT: u32 = 1;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The explain section: `filesystem`, `network`, `syscalls`, `environment`, `skills`,
    /// `isolation`, `enforcement`, `command` or `files`.
    pub category: String,
    /// What changed, as a key for machines (`readable`, `domain-allowed`, ...).
    pub aspect: String,
    /// The subject (a path, a domain, a syscall, a variable, ...).
    pub subject: String,
    /// The change in words.
    pub text: String,
}

/// The comparison of two bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// [`FORMAT`].
    pub format: u32,
    /// Bundle A's directory.
    pub a: String,
    /// Bundle B's directory.
    pub b: String,
    /// What B allows that A does not.
    pub b_allows: Vec<Change>,
    /// What A allows that B does not.
    pub a_allows: Vec<Change>,
    /// Differences that widen neither (command, ids, names, values).
    pub other: Vec<Change>,
}

impl Diff {
    /// Whether the bundles are the same.
    pub fn is_empty(&self) -> bool {
        self.b_allows.is_empty() && self.a_allows.is_empty() && self.other.is_empty()
    }
}

fn change(category: &str, aspect: &str, subject: impl Into<String>, text: String) -> Change {
    Change {
        category: category.into(),
        aspect: aspect.into(),
        subject: subject.into(),
        text,
    }
}

fn within(p: &str, outer: &str) -> bool {
    Path::new(p).starts_with(outer)
}

fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
    v.iter().cloned().collect()
}

fn paths(v: &[&[PathGrant]]) -> Vec<String> {
    v.iter()
        .flat_map(|g| g.iter().map(|p| p.path.clone()))
        .collect()
}

/// What `wide` allows that `narrow` does not (one direction).
fn widening(narrow: &Explanation, wide: &Explanation) -> Vec<Change> {
    let mut out = Vec::new();
    filesystem(narrow, wide, &mut out);
    network(narrow, wide, &mut out);
    syscalls(narrow, wide, &mut out);
    environment(narrow, wide, &mut out);
    skills(narrow, wide, &mut out);
    isolation(narrow, wide, &mut out);
    enforcement(narrow, wide, &mut out);
    out
}

fn filesystem(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    let (nf, wf) = (&n.filesystem, &w.filesystem);
    let n_read = paths(&[&nf.read_only, &nf.read_write]);
    let n_write = paths(&[&nf.read_write, &nf.write_only]);
    for p in paths(&[&wf.read_only, &wf.read_write]) {
        if !n_read.iter().any(|q| within(&p, q)) {
            out.push(change(
                "filesystem",
                "readable",
                &p,
                format!("can read {p}"),
            ));
        }
    }
    for p in paths(&[&wf.read_write, &wf.write_only]) {
        if !n_write.iter().any(|q| within(&p, q)) {
            out.push(change(
                "filesystem",
                "writable",
                &p,
                format!("can write {p}"),
            ));
        }
    }
    for p in &wf.execute {
        if !nf.execute.iter().any(|q| within(p, q)) {
            out.push(change(
                "filesystem",
                "executable",
                p,
                format!("can run programs from {p}"),
            ));
        }
    }
    for s in &wf.scratch {
        match nf.scratch.iter().find(|x| x.path == s.path) {
            None => out.push(change(
                "filesystem",
                "scratch",
                &s.path,
                format!("has a scratch filesystem at {}", s.path),
            )),
            Some(x) => {
                if s.writable && !x.writable {
                    out.push(change(
                        "filesystem",
                        "scratch-writable",
                        &s.path,
                        format!("can write scratch {}", s.path),
                    ));
                }
                if s.exec && !x.exec {
                    out.push(change(
                        "filesystem",
                        "scratch-exec",
                        &s.path,
                        format!("can run programs from scratch {}", s.path),
                    ));
                }
            }
        }
    }
    let w_visible = paths(&[&wf.read_only, &wf.read_write, &wf.write_only]);
    for h in &nf.hidden {
        let still = wf.hidden.iter().any(|x| within(&h.path, &x.path));
        if !still && w_visible.iter().any(|q| within(&h.path, q)) {
            out.push(change(
                "filesystem",
                "unmasked",
                &h.path,
                format!("no longer hides {} ({})", h.path, h.rule),
            ));
        }
    }
    for p in &nf.readonly_kernel {
        if !wf.readonly_kernel.contains(p) {
            out.push(change(
                "filesystem",
                "kernel-writable",
                p,
                format!("{p} is no longer read-only"),
            ));
        }
    }
    for d in &wf.devices {
        if !nf.devices.iter().any(|x| x.path == d.path) {
            out.push(change(
                "filesystem",
                "device",
                &d.path,
                format!("has the device {} ({})", d.path, d.how),
            ));
        }
    }
    for s in &wf.special {
        if !nf
            .special
            .iter()
            .any(|x| x.path == s.path && x.kind == s.kind)
        {
            out.push(change(
                "filesystem",
                "special",
                &s.path,
                format!("mounts {} at {}", s.kind, s.path),
            ));
        }
    }
    if !wf.root_readonly && nf.root_readonly {
        out.push(change(
            "filesystem",
            "root-writable",
            &wf.root,
            "the root filesystem is writable".into(),
        ));
    }
}

fn mode_rank(mode: &str) -> u8 {
    match mode {
        "blocked" => 0,
        "filtered" => 1,
        _ => 2,
    }
}

fn ns_rank(ns: &str) -> u8 {
    match ns {
        "own" => 0,
        "joined" => 1,
        _ => 2,
    }
}

fn network(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    let (nn, wn) = (&n.network, &w.network);
    if ns_rank(&wn.namespace) > ns_rank(&nn.namespace) {
        out.push(change(
            "network",
            "namespace",
            &wn.namespace,
            format!(
                "network namespace {} instead of {}",
                wn.namespace, nn.namespace
            ),
        ));
    }
    let ports = |v: &[u16]| -> BTreeSet<u16> { v.iter().copied().collect() };
    match (&nn.policy, &wn.policy) {
        (Some(np), Some(wp)) => {
            if mode_rank(&wp.mode) > mode_rank(&np.mode) {
                out.push(change(
                    "network",
                    "mode",
                    &wp.mode,
                    format!("network mode {} instead of {}", wp.mode, np.mode),
                ));
            }
            if wp.enforcement == "env-only" && np.enforcement != "env-only" {
                out.push(change(
                    "network",
                    "enforcement",
                    "env-only",
                    "network enforcement env-only (advisory) instead of kernel".into(),
                ));
            }
            // Domain rules only mean something in filtered mode: a blocked bundle reaches no
            // domain, an open one every domain (and the mode change is reported above).
            let n_filtered = np.mode == "filtered";
            if wp.mode == "filtered" && np.mode != "open" {
                let none = Vec::new();
                let n_allow = if n_filtered { &np.allow_domains } else { &none };
                for d in set(&wp.allow_domains).difference(&set(n_allow)) {
                    out.push(change(
                        "network",
                        "domain-allowed",
                        d,
                        format!("allows the domain {d}"),
                    ));
                }
                if n_filtered {
                    for d in set(&np.deny_domains).difference(&set(&wp.deny_domains)) {
                        out.push(change(
                            "network",
                            "domain-not-denied",
                            d,
                            format!("no longer denies the domain {d}"),
                        ));
                    }
                }
                if wp.prompt.enabled && !(n_filtered && np.prompt.enabled) {
                    out.push(change(
                        "network",
                        "prompt",
                        "enabled",
                        "asks the user about hosts outside the lists (they can be allowed)".into(),
                    ));
                }
                if wp.prompt.enabled
                    && wp.prompt.on_unavailable == "allow"
                    && !(n_filtered && np.prompt.enabled && np.prompt.on_unavailable == "allow")
                {
                    out.push(change(
                        "network",
                        "prompt-unavailable",
                        "allow",
                        "allows undecided hosts when no dialog can be shown".into(),
                    ));
                }
            }
            for (aspect, words, a, b) in [
                (
                    "listen-port",
                    "may listen on port",
                    &np.listen_ports,
                    &wp.listen_ports,
                ),
                (
                    "connect-port",
                    "may connect directly to port",
                    &np.allow_tcp_connect,
                    &wp.allow_tcp_connect,
                ),
                (
                    "open-port",
                    "may reach host loopback port",
                    &np.open_ports,
                    &wp.open_ports,
                ),
            ] {
                for p in ports(b).difference(&ports(a)) {
                    out.push(change(
                        "network",
                        aspect,
                        p.to_string(),
                        format!("{words} {p}"),
                    ));
                }
            }
        }
        (None, Some(wp)) => out.push(change(
            "network",
            "policy",
            &wp.mode,
            format!("has omac's network policy (mode {})", wp.mode),
        )),
        _ => {}
    }
    for br in &wn.bridges {
        if !nn.bridges.contains(br) {
            out.push(change(
                "network",
                "bridge",
                &br.name,
                format!("bridge {} {} -> {}", br.name, br.listen, br.socket),
            ));
        }
    }
    if let (Some(nt), Some(wt)) = (&nn.landlock_tcp, &wn.landlock_tcp) {
        for (aspect, words, a, b) in [
            ("landlock-bind", "bind", &nt.bind_tcp, &wt.bind_tcp),
            (
                "landlock-connect",
                "connect",
                &nt.connect_tcp,
                &wt.connect_tcp,
            ),
        ] {
            match (a, b) {
                (Some(_), None) => out.push(change(
                    "network",
                    aspect,
                    "any",
                    format!("Landlock no longer restricts TCP {words}"),
                )),
                (Some(a), Some(b)) => {
                    for p in ports(b).difference(&ports(a)) {
                        out.push(change(
                            "network",
                            aspect,
                            p.to_string(),
                            format!("Landlock allows TCP {words} on port {p}"),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

fn refusals(x: &Explanation) -> BTreeSet<(String, String)> {
    let mut s = BTreeSet::new();
    for g in &x.syscalls.groups {
        for r in &g.refused {
            s.insert((g.name.clone(), r.clone()));
        }
        if !g.complete {
            // A partial group may refuse a name under some arguments only: keep the mark.
            s.insert((g.name.clone(), "(partial)".into()));
        }
    }
    for o in &x.syscalls.other {
        s.insert(("other".into(), o.clone()));
    }
    s
}

fn syscalls(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    let (ns, ws) = (&n.syscalls, &w.syscalls);
    if ns.filtered && !ws.filtered {
        out.push(change(
            "syscalls",
            "filter",
            "none",
            "has no syscall filter".into(),
        ));
    }
    if ns.filtered && ws.filtered && ns.default_action != ws.default_action {
        out.push(change(
            "syscalls",
            "default-action",
            ws.default_action.clone().unwrap_or_default(),
            format!(
                "default action {} instead of {}",
                ws.default_action.as_deref().unwrap_or("?"),
                ns.default_action.as_deref().unwrap_or("?")
            ),
        ));
    }
    for a in set(&ws.architectures).difference(&set(&ns.architectures)) {
        if ns.filtered {
            out.push(change(
                "syscalls",
                "architecture",
                a,
                format!("admits the {a} entry point"),
            ));
        }
    }
    let (nr, wr) = (refusals(n), refusals(w));
    for (group, name) in nr.difference(&wr) {
        if name == "(partial)" {
            continue;
        }
        let text = if group == "other" {
            format!("no longer refuses {name}")
        } else {
            format!("no longer refuses {name} (group {group})")
        };
        out.push(change("syscalls", "not-refused", name, text));
    }
}

fn environment(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    let (ne, we) = (&n.environment, &w.environment);
    for v in set(&we.passthrough).difference(&set(&ne.passthrough)) {
        out.push(change(
            "environment",
            "passed",
            v,
            format!("passes host variables {v}"),
        ));
    }
    for v in set(&ne.blocked).difference(&set(&we.blocked)) {
        out.push(change(
            "environment",
            "not-blocked",
            v,
            format!("no longer blocks {v}"),
        ));
    }
    for v in set(&ne.removed).difference(&set(&we.removed)) {
        out.push(change(
            "environment",
            "not-removed",
            v,
            format!("no longer removes {v}"),
        ));
    }
}

fn skills(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    for l in &w.skills.layers {
        match n.skills.layers.iter().find(|x| x.name == l.name) {
            None => out.push(change(
                "skills",
                "skill",
                &l.name,
                format!("adds the skill {} ({})", l.name, l.digest),
            )),
            Some(x) if x.digest != l.digest => out.push(change(
                "skills",
                "skill-changed",
                &l.name,
                format!(
                    "runs a changed skill {}: {} instead of {}",
                    l.name, l.digest, x.digest
                ),
            )),
            _ => {}
        }
    }
    for s in &w.skills.sidecars {
        match n.skills.sidecars.iter().find(|x| x.skill == s.skill) {
            None => out.push(change(
                "skills",
                "sidecar",
                &s.skill,
                format!("starts the sidecar {}", s.skill),
            )),
            Some(x) => {
                for v in set(&s.env).difference(&set(&x.env)) {
                    out.push(change(
                        "skills",
                        "sidecar-env",
                        format!("{}:{v}", s.skill),
                        format!("sidecar {} gets the host variable {v}", s.skill),
                    ));
                }
                for v in set(&s.secrets).difference(&set(&x.secrets)) {
                    out.push(change(
                        "skills",
                        "sidecar-secret",
                        format!("{}:{v}", s.skill),
                        format!("sidecar {} gets the secret {v}", s.skill),
                    ));
                }
            }
        }
    }
    if let (Some(nf), Some(wf)) = (&n.skills.facade, &w.skills.facade) {
        for m in &wf.mounts {
            if !nf.mounts.contains(m) {
                out.push(change(
                    "skills",
                    "route",
                    &m.mount,
                    format!(
                        "facade routes /{} to {}",
                        m.mount.trim_start_matches('/'),
                        m.skill
                    ),
                ));
            }
        }
    }
}

fn isolation(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    let (ni, wi) = (&n.isolation, &w.isolation);
    // The network namespace is judged under `network`.
    let missing = |i: &explain::IsolationView| -> BTreeSet<String> {
        i.missing_namespaces
            .iter()
            .filter(|k| *k != "network")
            .cloned()
            .collect()
    };
    for k in missing(wi).difference(&missing(ni)) {
        out.push(change(
            "isolation",
            "namespace-missing",
            k,
            format!("has no {k} namespace"),
        ));
    }
    let caps = |c: &Option<crate::oci::Capabilities>| -> BTreeSet<String> {
        match c {
            None => ["(runtime default)".to_string()].into(),
            Some(c) => c
                .bounding
                .iter()
                .chain(&c.effective)
                .chain(&c.permitted)
                .chain(&c.inheritable)
                .chain(&c.ambient)
                .cloned()
                .collect(),
        }
    };
    for c in caps(&wi.capabilities).difference(&caps(&ni.capabilities)) {
        out.push(change(
            "isolation",
            "capability",
            c,
            format!("keeps the capability {c}"),
        ));
    }
    if ni.no_new_privileges && !wi.no_new_privileges {
        out.push(change(
            "isolation",
            "no-new-privileges",
            "off",
            "no_new_privs is off".into(),
        ));
    }
    for r in &ni.rlimits {
        match wi.rlimits.iter().find(|x| x.kind == r.kind) {
            None => out.push(change(
                "isolation",
                "rlimit",
                &r.kind,
                format!("sets no {} limit", r.kind),
            )),
            Some(x) if x.hard > r.hard || x.soft > r.soft => out.push(change(
                "isolation",
                "rlimit",
                &r.kind,
                format!(
                    "{} {}/{} instead of {}/{}",
                    r.kind, x.soft, x.hard, r.soft, r.hard
                ),
            )),
            _ => {}
        }
    }
    let looser = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(_), None) => true,
        (Some(a), Some(b)) => b > a,
        _ => false,
    };
    let show = |what: &str, v: Option<f64>| match v {
        None => "none".to_string(),
        Some(v) if what == "memory" => explain::text::bytes(v as i64),
        Some(v) => v.to_string(),
    };
    for (what, a, b) in [
        (
            "memory",
            ni.memory_limit.map(|v| v as f64),
            wi.memory_limit.map(|v| v as f64),
        ),
        (
            "pids",
            ni.pids_limit.map(|v| v as f64),
            wi.pids_limit.map(|v| v as f64),
        ),
        ("cpu", ni.cpu_limit, wi.cpu_limit),
    ] {
        if looser(a, b) {
            out.push(change(
                "isolation",
                "limit",
                what,
                format!(
                    "{what} limit {} instead of {}",
                    show(what, b),
                    show(what, a)
                ),
            ));
        }
    }
}

fn enforcement(n: &Explanation, w: &Explanation, out: &mut Vec<Change>) {
    let layers = |x: &Explanation| -> BTreeSet<String> {
        x.enforcement
            .required
            .iter()
            .map(|l| l.layer.clone())
            .collect()
    };
    for l in layers(n).difference(&layers(w)) {
        out.push(change(
            "enforcement",
            "not-required",
            l,
            format!("does not require {l}: the run may start without it"),
        ));
    }
    if let (Some(nl), Some(wl)) = (&n.enforcement.landlock, &w.enforcement.landlock) {
        if nl.required && !wl.required {
            out.push(change(
                "enforcement",
                "landlock-optional",
                "landlock",
                "Landlock is best effort instead of required".into(),
            ));
        }
        if wl.min_abi < nl.min_abi {
            out.push(change(
                "enforcement",
                "landlock-abi",
                wl.min_abi.to_string(),
                format!(
                    "accepts Landlock ABI {} instead of {}",
                    wl.min_abi, nl.min_abi
                ),
            ));
        }
        for s in set(&nl.scopes).difference(&set(&wl.scopes)) {
            out.push(change(
                "enforcement",
                "landlock-scope",
                s,
                format!("no Landlock {s} scope"),
            ));
        }
    }
}

fn other(a: &Explanation, b: &Explanation) -> Vec<Change> {
    let mut out = Vec::new();
    fn cmp(out: &mut Vec<Change>, category: &str, aspect: &str, x: String, y: String) {
        if x != y {
            out.push(change(
                category,
                aspect,
                aspect,
                format!("{aspect}: {x} -> {y}"),
            ));
        }
    }
    let (ab, bb) = (&a.bundle, &b.bundle);
    cmp(
        &mut out,
        "command",
        "args",
        format!("{:?}", ab.args),
        format!("{:?}", bb.args),
    );
    cmp(&mut out, "command", "cwd", ab.cwd.clone(), bb.cwd.clone());
    cmp(
        &mut out,
        "command",
        "uid",
        ab.uid.to_string(),
        bb.uid.to_string(),
    );
    cmp(
        &mut out,
        "command",
        "gid",
        ab.gid.to_string(),
        bb.gid.to_string(),
    );
    cmp(
        &mut out,
        "command",
        "terminal",
        ab.terminal.to_string(),
        bb.terminal.to_string(),
    );
    cmp(
        &mut out,
        "command",
        "hostname",
        format!("{:?}", ab.hostname),
        format!("{:?}", bb.hostname),
    );
    cmp(
        &mut out,
        "command",
        "kind",
        ab.kind.clone(),
        bb.kind.clone(),
    );
    cmp(
        &mut out,
        "command",
        "ociVersion",
        ab.oci_version.clone(),
        bb.oci_version.clone(),
    );
    cmp(
        &mut out,
        "command",
        "profile",
        ab.profile
            .as_ref()
            .map_or("none".into(), |p| format!("{} {:?}", p.name, p.sources)),
        bb.profile
            .as_ref()
            .map_or("none".into(), |p| format!("{} {:?}", p.name, p.sources)),
    );
    cmp(
        &mut out,
        "command",
        "harness",
        format!("{:?}", ab.harness),
        format!("{:?}", bb.harness),
    );
    let wd = |x: &Explanation| {
        x.filesystem
            .workdir
            .as_ref()
            .map_or("none".into(), |w| format!("{} ({})", w.path, w.access))
    };
    cmp(&mut out, "filesystem", "workdir", wd(a), wd(b));
    let (ae, be) = (&a.environment, &b.environment);
    let names = |v: &[String]| -> Vec<(String, String)> {
        v.iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    };
    let (af, bf) = (names(&ae.fixed), names(&be.fixed));
    for (k, v) in &bf {
        match af.iter().find(|(x, _)| x == k) {
            None => out.push(change("environment", "set", k, format!("sets {k}={v}"))),
            Some((_, old)) if old != v => out.push(change(
                "environment",
                "value",
                k,
                format!("{k}: {old} -> {v}"),
            )),
            _ => {}
        }
    }
    for (k, _) in &af {
        if !bf.iter().any(|(x, _)| x == k) {
            out.push(change(
                "environment",
                "unset",
                k,
                format!("no longer sets {k}"),
            ));
        }
    }
    for x in &a.filesystem.scratch {
        if let Some(y) = b.filesystem.scratch.iter().find(|y| y.path == x.path) {
            cmp(
                &mut out,
                "filesystem",
                &format!("scratch {} size", x.path),
                x.size.clone().unwrap_or_else(|| "unlimited".into()),
                y.size.clone().unwrap_or_else(|| "unlimited".into()),
            );
        }
    }
    let (ai, bi) = (&a.isolation, &b.isolation);
    cmp(
        &mut out,
        "isolation",
        "uidMappings",
        format!("{:?}", ai.uid_mappings),
        format!("{:?}", bi.uid_mappings),
    );
    cmp(
        &mut out,
        "isolation",
        "gidMappings",
        format!("{:?}", ai.gid_mappings),
        format!("{:?}", bi.gid_mappings),
    );
    cmp(
        &mut out,
        "isolation",
        "sysctl",
        list(&ai.sysctl),
        list(&bi.sysctl),
    );
    if let (Some(x), Some(y)) = (&a.network.policy, &b.network.policy) {
        {
            cmp(
                &mut out,
                "network",
                "upstreamProxy",
                format!("{:?}", x.upstream_proxy),
                format!("{:?}", y.upstream_proxy),
            );
            cmp(
                &mut out,
                "network",
                "noProxy",
                list(&x.no_proxy),
                list(&y.no_proxy),
            );
            cmp(
                &mut out,
                "network",
                "proxyInjection",
                list(&x.proxy_injection),
                list(&y.proxy_injection),
            );
            cmp(
                &mut out,
                "network",
                "promptTimeoutSecs",
                x.prompt.timeout_secs.to_string(),
                y.prompt.timeout_secs.to_string(),
            );
        }
    }
    out
}

/// Paths where two JSON documents differ (at most `limit`).
fn json_paths(a: &Value, b: &Value, at: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                json_paths(va, vb, &format!("{at}.{k}"), out, limit);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_paths(va, vb, &format!("{at}[{i}]"), out, limit);
            }
        }
        _ => out.push(at.to_string()),
    }
}

fn file_differences(a: &Loaded, b: &Loaded) -> Vec<Change> {
    let value = |l: &Loaded| {
        let mut c = serde_json::to_value(&l.config).unwrap_or(Value::Null);
        // The digest follows omac.json, which is compared on its own.
        if let Some(ann) = c.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove(ANNOTATION);
        }
        let e = serde_json::to_value(&l.ext).unwrap_or(Value::Null);
        (c, e)
    };
    let ((ac, ae), (bc, be)) = (value(a), value(b));
    let mut paths = Vec::new();
    json_paths(&ac, &bc, "config.json", &mut paths, 20);
    json_paths(&ae, &be, "omac.json", &mut paths, 40);
    paths
        .into_iter()
        .map(|p| change("files", "value", &p, format!("{p} differs")))
        .collect()
}

/// Compares bundle `a` with bundle `b`.
pub fn diff(a: &Loaded, b: &Loaded) -> Diff {
    let (xa, xb) = (explain::explain(a), explain::explain(b));
    let mut d = Diff {
        format: FORMAT,
        a: xa.bundle.dir.clone(),
        b: xb.bundle.dir.clone(),
        b_allows: widening(&xa, &xb),
        a_allows: widening(&xb, &xa),
        other: other(&xa, &xb),
    };
    if d.is_empty() {
        d.other = file_differences(a, b);
    }
    d
}

/// The diff as canonical JSON.
pub fn to_json(d: &Diff) -> Vec<u8> {
    crate::render::canonical_json(d)
}

/// The diff in plain words.
pub fn render(d: &Diff) -> String {
    let mut o = String::new();
    if d.is_empty() {
        let _ = writeln!(o, "The bundles {} and {} allow the same.", d.a, d.b);
        return o;
    }
    let section = |o: &mut String, title: String, items: &[Change]| {
        let _ = writeln!(o, "{title}");
        if items.is_empty() {
            let _ = writeln!(o, "  nothing");
        }
        for c in items {
            let _ = writeln!(o, "  {}: {}", c.category, c.text);
        }
    };
    section(
        &mut o,
        format!("B ({}) allows what A ({}) does not:", d.b, d.a),
        &d.b_allows,
    );
    section(
        &mut o,
        format!("A ({}) allows what B ({}) does not:", d.a, d.b),
        &d.a_allows,
    );
    if !d.other.is_empty() {
        section(&mut o, "Other differences (A -> B):".into(), &d.other);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext::SkillLayer;
    use crate::testing::{s, scratch};

    fn has(v: &[Change], aspect: &str, subject: &str) -> bool {
        v.iter().any(|c| c.aspect == aspect && c.subject == subject)
    }

    #[test]
    fn equal_bundles_have_no_difference() {
        let sc = scratch();
        let a = sc.bundle("a", r#"{"extends": "default"}"#, Default::default());
        let b = sc.bundle("b", r#"{"extends": "default"}"#, Default::default());
        let d = diff(&a, &b);
        // Only the profile's source file differs, and it is reported as such.
        assert!(d.b_allows.is_empty() && d.a_allows.is_empty(), "{d:?}");
        assert_eq!(d.other.len(), 1, "{d:?}");
        assert_eq!(d.other[0].aspect, "profile");
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn each_direction_says_what_it_widens_and_the_two_mirror() {
        let sc = scratch();
        let strict = sc.bundle("s", r#"{"extends": "strict"}"#, Default::default());
        let wide = sc.bundle(
            "w",
            r#"{"extends": "open", "filesystem": {"allow": ["~"], "override_deny": ["~/.ssh"]},
                "environment": {"allow_vars": ["AWS_*"]},
                "seccomp": {"lift": ["@io_uring"]},
                "enforcement": {"require": ["namespaces"]}}"#,
            Default::default(),
        );
        let d = diff(&strict, &wide);
        let b = &d.b_allows;
        assert!(has(b, "mode", "open"), "{b:#?}");
        assert!(has(b, "namespace", "host"));
        assert!(has(b, "readable", &s(&sc.path("home"))));
        assert!(has(b, "writable", &s(&sc.path("home"))));
        assert!(has(b, "not-refused", "io_uring_setup"));
        assert!(has(b, "not-refused", "ptrace"));
        assert!(has(b, "passed", "AWS_*"));
        assert!(has(b, "not-required", "landlock-fs"));
        assert!(has(b, "not-required", "seccomp"));
        // ~/.ssh is in view in B and no longer masked; in A it was not in view at all.
        assert!(!has(b, "unmasked", &s(&sc.path("home/.ssh"))));
        // A's scratch home is what B replaces with the real one.
        assert!(has(&d.a_allows, "scratch", &s(&sc.path("home"))));
        let r = diff(&wide, &strict);
        assert_eq!(r.a_allows, d.b_allows);
        assert_eq!(r.b_allows, d.a_allows);
    }

    #[test]
    fn lifting_a_mask_inside_the_view_is_a_widening() {
        let sc = scratch();
        let a = sc.bundle(
            "a",
            r#"{"filesystem": {"allow": ["~"]}}"#,
            Default::default(),
        );
        let b = sc.bundle(
            "b",
            r#"{"filesystem": {"allow": ["~"], "override_deny": ["~/.ssh", ".env"]}}"#,
            Default::default(),
        );
        let d = diff(&a, &b);
        assert!(
            has(&d.b_allows, "unmasked", &s(&sc.path("home/.ssh"))),
            "{d:#?}"
        );
        assert!(d.a_allows.is_empty(), "{d:#?}");
    }

    #[test]
    fn containment_decides_whether_a_path_is_new() {
        let sc = scratch();
        std::fs::create_dir_all(sc.path("x/y")).unwrap();
        let x = s(&sc.path("x"));
        let a = sc.bundle(
            "a",
            &format!(r#"{{"filesystem": {{"read": ["{x}"]}}}}"#),
            Default::default(),
        );
        let b = sc.bundle(
            "b",
            &format!(r#"{{"filesystem": {{"read": ["{x}"], "allow": ["{x}/y"]}}}}"#),
            Default::default(),
        );
        let d = diff(&a, &b);
        assert!(has(&d.b_allows, "writable", &format!("{x}/y")), "{d:#?}");
        assert!(!has(&d.b_allows, "readable", &format!("{x}/y")), "{d:#?}");
    }

    #[test]
    fn a_changed_skill_digest_is_reported() {
        let sc = scratch();
        let layer = |hex: char| crate::Extras {
            skills: vec![SkillLayer {
                name: "echo".into(),
                digest: format!("sha256:{}", hex.to_string().repeat(64)),
                source: "/skills/echo".into(),
            }],
            ..Default::default()
        };
        let a = sc.bundle("a", "{}", layer('a'));
        let b = sc.bundle("b", "{}", layer('b'));
        let d = diff(&a, &b);
        assert!(has(&d.b_allows, "skill-changed", "echo"), "{d:#?}");
        assert!(has(&d.a_allows, "skill-changed", "echo"), "{d:#?}");
        let none = sc.bundle("n", "{}", Default::default());
        assert!(has(&diff(&none, &a).b_allows, "skill", "echo"));
    }

    #[test]
    fn what_the_categories_miss_is_still_a_difference() {
        let sc = scratch();
        let a = sc.bundle("a", "{}", Default::default());
        let mut b = a.clone();
        let m = b
            .config
            .mounts
            .iter_mut()
            .find(|m| m.destination == "/tmp")
            .unwrap();
        m.options.push("size=1m".into());
        let d = diff(&a, &b);
        assert!(!d.is_empty());
        assert!(
            d.other.iter().any(|c| c.aspect == "scratch /tmp size"),
            "{d:#?}"
        );
        // A difference no category knows is listed by its JSON path.
        let mut c = a.clone();
        c.config.linux.rootfs_propagation = Some("slave".into());
        let d = diff(&a, &c);
        assert!(
            d.other.iter().any(
                |c| c.category == "files" && c.subject == "config.json.linux.rootfsPropagation"
            ),
            "{d:#?}"
        );
        assert!(render(&d).contains("Other differences"));
    }
}
