//! The plain-words rendering of an [`Explanation`].

use std::fmt::Write;

use super::{Explanation, PathGrant};

/// Joins `items` with ", ", or says `none`.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(", ")
}

fn grants(items: &[PathGrant]) -> String {
    let v: Vec<String> = items
        .iter()
        .map(|g| match &g.source {
            Some(s) => format!("{} (from {s})", g.path),
            None => g.path.clone(),
        })
        .collect();
    list(&v)
}

fn quote_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Human size of a byte count (`512 MiB`).
pub fn bytes(n: i64) -> String {
    const UNITS: &[(i64, &str)] = &[
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if n >= *size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

/// Renders `x` in plain words.
pub fn render(x: &Explanation) -> String {
    let mut o = String::new();
    let b = &x.bundle;
    let _ = write!(o, "Bundle {} ", b.dir);
    match (&b.profile, b.kind.as_str()) {
        (Some(p), _) => {
            let _ = write!(o, "(omac, profile {:?} from {}", p.name, list(&p.sources));
            if let Some(h) = &b.harness {
                let _ = write!(o, ", harness {h}");
            }
            let _ = writeln!(o, "; OCI {})", b.oci_version);
        }
        (None, _) => {
            let _ = writeln!(o, "(plain OCI {}, no omac.json)", b.oci_version);
        }
    }
    let _ = writeln!(
        o,
        "Runs {} as uid {} gid {} in {}{}",
        quote_args(&b.args),
        b.uid,
        b.gid,
        b.cwd,
        if b.terminal { ", with a terminal" } else { "" }
    );

    let f = &x.filesystem;
    let _ = writeln!(o, "\nFilesystem");
    let _ = writeln!(
        o,
        "  The root ({}) is {}; the agent sees only what is mounted on it:",
        f.root,
        if f.root_readonly {
            "read-only"
        } else {
            "WRITABLE"
        }
    );
    if let Some(w) = &f.workdir {
        let _ = writeln!(o, "  Work directory: {} ({})", w.path, w.access);
    }
    let _ = writeln!(o, "  Read and write: {}", grants(&f.read_write));
    let _ = writeln!(o, "  Read only:      {}", grants(&f.read_only));
    if !f.write_only.is_empty() {
        let _ = writeln!(o, "  Write only:     {}", grants(&f.write_only));
    }
    if !f.unusable.is_empty() {
        let _ = writeln!(
            o,
            "  Mounted but closed by Landlock: {}",
            grants(&f.unusable)
        );
    }
    let _ = writeln!(o, "  Execute from:   {}", list(&f.execute));
    let _ = writeln!(o, "  Scratch (empty at start, gone at exit):");
    if f.scratch.is_empty() {
        let _ = writeln!(o, "    none");
    }
    for s in &f.scratch {
        let mut extra = Vec::new();
        if let Some(p) = &s.purpose {
            extra.push(p.clone());
        }
        if let Some(sz) = &s.size {
            extra.push(format!("size {sz}"));
        }
        if !s.writable {
            extra.push("not writable".into());
        }
        if !s.exec {
            extra.push("no exec".into());
        }
        let _ = writeln!(o, "    {} ({})", s.path, extra.join(", "));
    }
    let _ = writeln!(
        o,
        "  Hidden (masked: an empty directory or file in its place):"
    );
    if f.hidden.is_empty() {
        let _ = writeln!(o, "    none");
    }
    let mut rules: Vec<&str> = Vec::new();
    for h in &f.hidden {
        if !rules.contains(&h.rule.as_str()) {
            rules.push(&h.rule);
        }
    }
    for r in rules {
        let paths: Vec<&str> = f
            .hidden
            .iter()
            .filter(|h| h.rule == r)
            .map(|h| h.path.as_str())
            .collect();
        let _ = writeln!(o, "    {} ({r}: {})", list(&paths), super::rule_meaning(r));
    }
    if !f.readonly_kernel.is_empty() {
        let _ = writeln!(o, "  Kernel paths read-only: {}", list(&f.readonly_kernel));
    }
    let devs: Vec<String> = f
        .devices
        .iter()
        .map(|d| match d.how.as_str() {
            "runtime" => d.path.clone(),
            "bind" => format!("{} (the host's)", d.path),
            other => format!("{} ({other})", d.path),
        })
        .collect();
    let _ = writeln!(o, "  Devices: {}", list(&devs));
    for s in &f.special {
        let what = match s.kind.as_str() {
            "proc" => "a /proc of the sandbox's own processes",
            "devpts" => "a private set of pseudo-terminals",
            "sysfs" => "the kernel's sysfs",
            "mqueue" => "POSIX message queues",
            "cgroup" | "cgroup2" => "the cgroup filesystem",
            "tmpfs" => "a small tmpfs holding the device nodes",
            _ => "a kernel filesystem",
        };
        let _ = writeln!(o, "  {} ({}): {what}", s.path, s.kind);
    }

    let n = &x.network;
    let _ = writeln!(o, "\nNetwork");
    match n.namespace.as_str() {
        "own" => {
            let _ = writeln!(
                o,
                "  Own network namespace: no interface but loopback; nothing outside is reachable except through the bridges below."
            );
        }
        "joined" => {
            let _ = writeln!(
                o,
                "  Joins the network namespace {}",
                n.namespace_path.as_deref().unwrap_or("?")
            );
        }
        _ => {
            let _ = writeln!(
                o,
                "  The host's network: the agent reaches whatever the host reaches."
            );
        }
    }
    if let Some(p) = &n.policy {
        let mode = match p.mode.as_str() {
            "blocked" => "blocked: no network at all".to_string(),
            "filtered" => format!(
                "filtered: HTTP(S) only through omac's proxy ({} enforcement)",
                p.enforcement
            ),
            "open" => "open: direct connections anywhere".to_string(),
            m => m.to_string(),
        };
        let _ = writeln!(o, "  Mode {mode}");
        if p.mode == "filtered" {
            let _ = writeln!(
                o,
                "  Allowed domains ({}): {}",
                p.allow_domains.len(),
                list(&p.allow_domains)
            );
            let _ = writeln!(
                o,
                "  Denied domains (deny beats allow): {}",
                list(&p.deny_domains)
            );
            if p.prompt.enabled {
                let _ = writeln!(
                    o,
                    "  Other hosts: the user is asked (dialog waits {} s; {} when no dialog can be shown)",
                    p.prompt.timeout_secs, p.prompt.on_unavailable
                );
            } else {
                let _ = writeln!(o, "  Other hosts: refused, never asked");
            }
            if let Some(u) = &p.upstream_proxy {
                let _ = writeln!(
                    o,
                    "  Through the upstream proxy {u} (except {})",
                    list(&p.no_proxy)
                );
            }
            if !p.proxy_injection.is_empty() {
                let _ = writeln!(
                    o,
                    "  Proxy settings injected for: {}",
                    list(&p.proxy_injection)
                );
            }
        }
        let ports = |v: &[u16]| list(&v.iter().map(u16::to_string).collect::<Vec<_>>());
        let _ = writeln!(o, "  May listen on ports: {}", ports(&p.listen_ports));
        let _ = writeln!(
            o,
            "  May connect directly to ports (any host): {}",
            ports(&p.allow_tcp_connect)
        );
        let _ = writeln!(
            o,
            "  Host loopback ports reachable: {}",
            ports(&p.open_ports)
        );
        if !p.publish_ports.is_empty() {
            let _ = writeln!(
                o,
                "  Ports published to the host's 127.0.0.1: {}",
                ports(&p.publish_ports)
            );
        }
    }
    for br in &n.bridges {
        let _ = writeln!(o, "  Bridge {}: {} -> {}", br.name, br.listen, br.socket);
    }
    if let Some(t) = &n.landlock_tcp {
        let fmt = |v: &Option<Vec<u16>>| match v {
            None => "unrestricted".to_string(),
            Some(p) => format!(
                "only {}",
                list(&p.iter().map(u16::to_string).collect::<Vec<_>>())
            ),
        };
        let _ = writeln!(
            o,
            "  Landlock TCP: bind {}, connect {}",
            fmt(&t.bind_tcp),
            fmt(&t.connect_tcp)
        );
    }

    let s = &x.syscalls;
    let _ = writeln!(o, "\nSyscalls");
    if !s.filtered {
        let _ = writeln!(o, "  No filter: every syscall is allowed.");
    } else {
        let _ = writeln!(
            o,
            "  Filter: default {}, entry points {}",
            s.default_action.as_deref().unwrap_or("?"),
            list(&s.architectures)
        );
        let _ = writeln!(o, "  Refused:");
        for g in &s.groups {
            let _ = writeln!(
                o,
                "    {}{}: {} [{}]",
                g.name,
                if g.complete { "" } else { " (in part)" },
                g.description,
                list(&g.refused)
            );
        }
        for r in &s.other {
            let _ = writeln!(o, "    {r}");
        }
        if s.groups.is_empty() && s.other.is_empty() {
            let _ = writeln!(o, "    nothing");
        }
    }
    if !s.not_refused.is_empty() {
        let names: Vec<String> = s
            .not_refused
            .iter()
            .map(|g| format!("{} ({})", g.name, g.description))
            .collect();
        let _ = writeln!(o, "  Not refused: {}", list(&names));
    }

    let e = &x.environment;
    let _ = writeln!(o, "\nEnvironment");
    let _ = writeln!(o, "  Set: {}", list(&e.fixed));
    if x.bundle.kind == "omac" {
        let _ = writeln!(
            o,
            "  Passed from the host at run time: {}",
            list(&e.passthrough)
        );
        let _ = writeln!(o, "  Never passed: {}", list(&e.blocked));
        let _ = writeln!(o, "  Removed last: {}", list(&e.removed));
    } else {
        let _ = writeln!(o, "  Nothing else is passed from the host.");
    }

    let k = &x.skills;
    let _ = writeln!(o, "\nSkills");
    if k.layers.is_empty() {
        let _ = writeln!(o, "  Layers: none");
    }
    for l in &k.layers {
        let _ = writeln!(o, "  {} {} (from {})", l.name, l.digest, l.source);
    }
    if let Some(fc) = &k.facade {
        let mounts: Vec<String> = fc
            .mounts
            .iter()
            .map(|m| format!("/{} -> {}", m.mount.trim_start_matches('/'), m.skill))
            .collect();
        let _ = writeln!(o, "  Facade: {} (routes: {})", fc.socket, list(&mounts));
    }
    if k.sidecars.is_empty() {
        let _ = writeln!(o, "  Sidecars: none");
    }
    for sc in &k.sidecars {
        let _ = writeln!(
            o,
            "  Sidecar {} on /{}: {} (health {}; env {}; secrets {}; config {})",
            sc.skill,
            sc.mount.trim_start_matches('/'),
            quote_args(&sc.command),
            sc.health.path,
            list(&sc.env),
            list(&sc.secrets),
            list(&sc.config)
        );
    }

    let i = &x.isolation;
    let _ = writeln!(o, "\nIsolation");
    let ns: Vec<String> = i
        .namespaces
        .iter()
        .map(|n| match &n.path {
            Some(p) => format!("{} (joins {p})", n.kind),
            None => n.kind.clone(),
        })
        .collect();
    let _ = writeln!(
        o,
        "  Namespaces: {}; missing: {}",
        list(&ns),
        list(&i.missing_namespaces)
    );
    let maps = |v: &[crate::oci::IdMapping]| {
        list(
            &v.iter()
                .map(|m| format!("{} -> host {} ({} ids)", m.container_id, m.host_id, m.size))
                .collect::<Vec<_>>(),
        )
    };
    if !i.uid_mappings.is_empty() || !i.gid_mappings.is_empty() {
        let _ = writeln!(
            o,
            "  uid map: {}; gid map: {}",
            maps(&i.uid_mappings),
            maps(&i.gid_mappings)
        );
    }
    match &i.capabilities {
        None => {
            let _ = writeln!(o, "  Capabilities: not set (left to the runtime)");
        }
        Some(c) => {
            let _ = writeln!(
                o,
                "  Capabilities: bounding {}; effective {}; permitted {}; inheritable {}; ambient {}",
                list(&c.bounding),
                list(&c.effective),
                list(&c.permitted),
                list(&c.inheritable),
                list(&c.ambient)
            );
        }
    }
    let _ = writeln!(
        o,
        "  no_new_privs: {}",
        if i.no_new_privileges { "yes" } else { "NO" }
    );
    let rl: Vec<String> = i
        .rlimits
        .iter()
        .map(|r| {
            format!(
                "{} {}/{}",
                r.kind.trim_start_matches("RLIMIT_"),
                r.soft,
                r.hard
            )
        })
        .collect();
    let _ = writeln!(o, "  rlimits (soft/hard): {}", list(&rl));
    let mut cg = Vec::new();
    if let Some(m) = i.memory_limit {
        cg.push(format!("memory {}", bytes(m)));
    }
    if let Some(p) = i.pids_limit {
        cg.push(format!("{p} processes"));
    }
    if let Some(c) = i.cpu_limit {
        cg.push(format!("{c} CPUs"));
    }
    let _ = writeln!(o, "  cgroup limits: {}", list(&cg));
    if !i.sysctl.is_empty() {
        let _ = writeln!(o, "  sysctl: {}", list(&i.sysctl));
    }

    let en = &x.enforcement;
    let _ = writeln!(o, "\nEnforcement");
    if x.bundle.kind == "omac" {
        if en.required.is_empty() {
            let _ = writeln!(
                o,
                "  Required: nothing (the run starts with whatever the host offers)"
            );
        }
        for l in &en.required {
            let _ = writeln!(o, "  Required: {} ({})", l.layer, l.meaning);
        }
    } else {
        let _ = writeln!(o, "  Whatever the runtime enforces of config.json.");
    }
    if let Some(l) = &en.landlock {
        let _ = writeln!(
            o,
            "  Landlock: ABI {} or newer ({}), {} filesystem rules, scopes {}",
            l.min_abi,
            if l.required {
                "required"
            } else {
                "best effort"
            },
            l.fs_rules,
            list(&l.scopes)
        );
    }

    if !x.notes.is_empty() {
        let _ = writeln!(o, "\nNotes");
        for note in &x.notes {
            let _ = writeln!(o, "  - {note}");
        }
    }
    o
}
