//! Semantic checks of one parsed profile file: values the JSON types cannot rule out.

use super::error::{at, keys, Issues, ProfileError};
use super::model::Profile;
use crate::ext::LAYERS;

/// Checks `p`, parsed from `text` of `file`; every problem found is reported at once.
pub fn validate(p: &Profile, text: &str, file: &str) -> Result<(), ProfileError> {
    let mut out = Issues::new(text);
    if let Some(e) = &p.extends {
        if e.trim().is_empty() {
            out.add(
                &keys(&["extends"]),
                "extends is empty",
                "name a profile (\"default\") or a path to one, or remove the field",
            );
        }
    }
    if let Some(w) = &p.workdir {
        if let Some(a) = &w.access {
            if !matches!(a.as_str(), "" | "none" | "read" | "write" | "readwrite") {
                out.add(
                    &keys(&["workdir", "access"]),
                    format!("unknown access {a:?}"),
                    "write one of \"none\", \"read\", \"write\", \"readwrite\"",
                );
            }
        }
    }
    if let Some(fs) = &p.filesystem {
        for (field, list) in [
            ("allow", &fs.allow),
            ("read", &fs.read),
            ("write", &fs.write),
            ("allow_unix_dir", &fs.allow_unix_dir),
        ] {
            for (i, path) in list.iter().enumerate() {
                check_grant_path(&mut out, &at(&["filesystem", field], i), path);
            }
        }
        for (i, entry) in fs.deny.iter().enumerate() {
            let loc = at(&["filesystem", "deny"], i);
            if is_path_form(entry) {
                check_grant_path(&mut out, &loc, entry);
            } else if entry.is_empty() {
                out.add(&loc, "empty deny entry", "remove it");
            } else if let Err(e) = globset::Glob::new(entry) {
                out.add(
                    &loc,
                    format!("invalid glob {entry:?}: {e}"),
                    "write a basename pattern such as \".env\" or \"*.pem\"",
                );
            }
        }
        for (i, entry) in fs.override_deny.iter().enumerate() {
            if entry.trim().is_empty() {
                out.add(
                    &at(&["filesystem", "override_deny"], i),
                    "empty entry",
                    "remove it",
                );
            }
        }
    }
    if let Some(n) = &p.network {
        check_network(&mut out, n);
    }
    if let Some(env) = &p.environment {
        for (field, list) in [
            ("allow_vars", &env.allow_vars),
            ("deny_vars", &env.deny_vars),
        ] {
            for (i, v) in list.iter().enumerate() {
                if !is_var_pattern(v) {
                    out.add(
                        &at(&["environment", field], i),
                        format!("{v:?} is not a variable name or pattern"),
                        "write a name (HOME), a prefix pattern (LC_*), or \"*\"",
                    );
                }
            }
        }
    }
    if let Some(s) = &p.seccomp {
        for (field, list, lift) in [("lift", &s.lift, true), ("deny", &s.deny, false)] {
            for (i, entry) in list.iter().enumerate() {
                if let Err(e) = omac_seccomp::policy::check_entry(entry, lift) {
                    out.add(
                        &at(&["seccomp", field], i),
                        e.to_string(),
                        "name a syscall of this machine (\"ptrace\"), a group (\"@ptrace\"), \
                         or for deny \"name:ERRNO\"",
                    );
                }
            }
        }
    }
    if let Some(r) = &p.resources {
        if let Some(m) = &r.memory {
            if parse_memory(m).is_none() {
                out.add(
                    &keys(&["resources", "memory"]),
                    format!("cannot read memory limit {m}"),
                    "write bytes (1073741824) or a size with a unit (\"512M\", \"4G\")",
                );
            }
        }
        if let Some(pids) = r.pids {
            if pids < 1 {
                out.add(
                    &keys(&["resources", "pids"]),
                    "pids must be at least 1",
                    "write a positive number such as 4096",
                );
            }
        }
        if let Some(cpu) = r.cpu {
            if !(cpu > 0.0 && cpu <= 4096.0) {
                out.add(
                    &keys(&["resources", "cpu"]),
                    format!("cpu {cpu} is out of range"),
                    "write the number of CPUs, such as 2 or 1.5",
                );
            }
        }
        if let Some(n) = r.open_files {
            if !(1..=1 << 20).contains(&n) {
                out.add(
                    &keys(&["resources", "open_files"]),
                    format!("open_files {n} is out of range"),
                    "write a number between 1 and 1048576",
                );
            }
        }
    }
    for (i, d) in p.devices.iter().enumerate() {
        if !d.starts_with("/dev/") || d.contains("/../") || d.ends_with("/..") {
            out.add(
                &at(&["devices"], i),
                format!("{d:?} is not a device path"),
                "write an absolute path under /dev, such as \"/dev/dri\" or \"/dev/nvidia0\"",
            );
        }
    }
    if let Some(e) = &p.enforcement {
        for (i, layer) in e.require.iter().flatten().enumerate() {
            if !LAYERS.iter().any(|(n, _)| n == layer) {
                let known: Vec<&str> = LAYERS.iter().map(|(n, _)| *n).collect();
                out.add(
                    &at(&["enforcement", "require"], i),
                    format!("unknown enforcement layer {layer:?}"),
                    format!("write one of {}", known.join(", ")),
                );
            }
        }
    }
    out.finish(file)
}

fn check_network(out: &mut Issues, n: &super::model::Network) {
    if let Some(m) = &n.mode {
        if !matches!(m.as_str(), "filtered" | "blocked" | "open") {
            out.add(
                &keys(&["network", "mode"]),
                format!("unknown mode {m:?}"),
                "write \"filtered\", \"blocked\" or \"open\"",
            );
        }
    }
    if let Some(e) = &n.enforcement {
        if !matches!(e.as_str(), "kernel" | "env-only") {
            out.add(
                &keys(&["network", "enforcement"]),
                format!("unknown enforcement {e:?}"),
                "write \"kernel\" or \"env-only\"",
            );
        }
    }
    for (field, list) in [
        ("allow_domain", &n.allow_domain),
        ("deny_domain", &n.deny_domain),
    ] {
        for (i, d) in list.iter().enumerate() {
            if let Err(why) = crate::domain::parse_rule(d) {
                out.add(
                    &at(&["network", field], i),
                    format!("{d:?}: {why}"),
                    "write a host (\"api.github.com\"), a suffix (\"*.github.com\"), optionally with \":PORT\"",
                );
            }
        }
    }
    for (field, list, min) in [
        ("listen_port", &n.listen_port, 1),
        ("allow_tcp_connect", &n.allow_tcp_connect, 1),
        ("open_port", &n.open_port, 0),
        ("publish_port", &n.publish_port, 1),
    ] {
        for (i, port) in list.iter().enumerate() {
            if !(min..=65535).contains(port) {
                out.add(
                    &at(&["network", field], i),
                    format!("port {port} is out of range"),
                    format!("write a port between {min} and 65535"),
                );
            }
        }
    }
    if let Some(np) = &n.network_prompt {
        if let Some(t) = np.prompt_timeout_secs {
            if !(0..=86_400).contains(&t) {
                out.add(
                    &keys(&["network", "network_prompt", "prompt_timeout_secs"]),
                    format!("timeout {t} is out of range"),
                    "write seconds between 0 (meaning 60) and 86400",
                );
            }
        }
        if let Some(u) = &np.on_unavailable {
            if !matches!(u.as_str(), "deny" | "allow") {
                out.add(
                    &keys(&["network", "network_prompt", "on_unavailable"]),
                    format!("unknown choice {u:?}"),
                    "write \"deny\" or \"allow\"",
                );
            }
        }
    }
    if let Some(u) = &n.upstream_proxy {
        if let Err(why) = crate::domain::parse_proxy_url(u) {
            out.add(
                &keys(&["network", "upstream_proxy"]),
                format!("{u:?}: {why}"),
                "write http://HOST:PORT (credentials as http://USER:PASS@HOST:PORT)",
            );
        }
    }
    for (i, h) in n.no_proxy.iter().enumerate() {
        let bad = h.is_empty()
            || h.starts_with('.')
            || h.contains('/')
            || h.contains(char::is_whitespace);
        if bad {
            out.add(
                &at(&["network", "no_proxy"], i),
                format!("{h:?} is not a host name"),
                "write a host or parent domain without a leading dot, such as \"corp.example\"",
            );
        }
    }
    for (i, r) in n.allow_private.iter().enumerate() {
        if let Err(why) = crate::cidr::parse_private(r) {
            out.add(
                &at(&["network", "allow_private"], i),
                format!("{r:?}: {why}"),
                "write a private range such as \"10.20.0.0/16\" or \"fd12:3456::/48\", or one address such as \"192.168.1.20\"",
            );
        }
    }
    for (i, inj) in n.proxy_injection.iter().enumerate() {
        if !matches!(inj.as_str(), "jvm" | "node") {
            out.add(
                &at(&["network", "proxy_injection"], i),
                format!("unknown injection {inj:?}"),
                "write \"jvm\" or \"node\"",
            );
        }
    }
}

/// Whether a `deny` entry names a path (rather than a basename glob).
pub fn is_path_form(entry: &str) -> bool {
    entry.contains('/') || entry.starts_with('~') || entry.starts_with('$')
}

fn check_grant_path(out: &mut Issues, loc: &[super::locate::Step], path: &str) {
    if path.is_empty() {
        out.add(loc, "empty path", "remove it, or write an absolute path");
    } else if !(path.starts_with('/')
        || path == "~"
        || path.starts_with("~/")
        || path.starts_with('$'))
    {
        out.add(
            loc,
            format!("{path:?} is a relative path"),
            "write an absolute path, or start it with ~/ (your home) or $VAR/",
        );
    } else if path.split('/').any(|c| c == "..") {
        out.add(
            loc,
            format!("{path:?} contains \"..\""),
            "write the path without \"..\" components",
        );
    }
}

fn is_var_pattern(v: &str) -> bool {
    if v == "*" {
        return true;
    }
    let name = v.strip_suffix('*').unwrap_or(v);
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads a memory size: a JSON number of bytes, or a string like `512M`.
pub fn parse_memory(v: &serde_json::Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return (n > 0).then_some(n);
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult: i64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}
