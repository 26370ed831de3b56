//! Differences that widen neither bundle: the command, ids, names and values.

use super::{change, Change};
use crate::explain::{text::list, Explanation};

/// Differences between `a` and `b` that widen neither, A -> B.
pub(super) fn other(a: &Explanation, b: &Explanation) -> Vec<Change> {
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
