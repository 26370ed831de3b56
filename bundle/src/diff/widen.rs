//! One direction of a diff: what the wider bundle allows that the narrower does not.

use std::collections::BTreeSet;
use std::path::Path;

use super::{change, Change};
use crate::explain::{self, Explanation, PathGrant};

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
pub(super) fn widening(narrow: &Explanation, wide: &Explanation) -> Vec<Change> {
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
                (
                    "publish-port",
                    "publishes to the host's loopback port",
                    &np.publish_ports,
                    &wp.publish_ports,
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
