//! How a profile extends its parent.
//!
//! - Scalars (strings, numbers, booleans) in the child override the parent's.
//! - Lists are merged: the parent's entries first, then the child's, without duplicates.
//!   A child can widen what its parent grants but never narrow it; to narrow, start from a
//!   profile that grants less (or lift a protected path with `override_deny`).
//! - `enforcement.require` is one setting, not a list of grants: the child's replaces it.

use super::model::*;

fn list(parent: Vec<String>, child: Vec<String>) -> Vec<String> {
    let mut out = parent;
    for c in child {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn nums(parent: Vec<i64>, child: Vec<i64>) -> Vec<i64> {
    let mut out = parent;
    for c in child {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn opt<T>(parent: Option<T>, child: Option<T>) -> Option<T> {
    child.or(parent)
}

fn nested<T: Default>(parent: Option<T>, child: Option<T>, f: impl FnOnce(T, T) -> T) -> Option<T> {
    match (parent, child) {
        (None, None) => None,
        (p, c) => Some(f(p.unwrap_or_default(), c.unwrap_or_default())),
    }
}

/// `child` applied on top of `parent`; the result has no `extends`.
pub fn merge(parent: Profile, child: Profile) -> Profile {
    Profile {
        extends: None,
        meta: nested(parent.meta, child.meta, |p, c| Meta {
            name: opt(p.name, c.name),
            description: opt(p.description, c.description),
        }),
        workdir: nested(parent.workdir, child.workdir, |p, c| Workdir {
            access: opt(p.access, c.access),
        }),
        filesystem: nested(parent.filesystem, child.filesystem, |p, c| Filesystem {
            allow: list(p.allow, c.allow),
            read: list(p.read, c.read),
            write: list(p.write, c.write),
            allow_unix_dir: list(p.allow_unix_dir, c.allow_unix_dir),
            deny: list(p.deny, c.deny),
            override_deny: list(p.override_deny, c.override_deny),
        }),
        network: nested(parent.network, child.network, |p, c| Network {
            mode: opt(p.mode, c.mode),
            allow_domain: list(p.allow_domain, c.allow_domain),
            deny_domain: list(p.deny_domain, c.deny_domain),
            listen_port: nums(p.listen_port, c.listen_port),
            allow_tcp_connect: nums(p.allow_tcp_connect, c.allow_tcp_connect),
            open_port: nums(p.open_port, c.open_port),
            publish_port: nums(p.publish_port, c.publish_port),
            network_prompt: nested(p.network_prompt, c.network_prompt, |p, c| NetworkPrompt {
                enabled: opt(p.enabled, c.enabled),
                prompt_timeout_secs: opt(p.prompt_timeout_secs, c.prompt_timeout_secs),
                on_unavailable: opt(p.on_unavailable, c.on_unavailable),
            }),
            enforcement: opt(p.enforcement, c.enforcement),
            upstream_proxy: opt(p.upstream_proxy, c.upstream_proxy),
            no_proxy: list(p.no_proxy, c.no_proxy),
            proxy_injection: list(p.proxy_injection, c.proxy_injection),
            allow_private: list(p.allow_private, c.allow_private),
        }),
        environment: nested(parent.environment, child.environment, |p, c| Environment {
            allow_vars: list(p.allow_vars, c.allow_vars),
            deny_vars: list(p.deny_vars, c.deny_vars),
        }),
        denial: nested(parent.denial, child.denial, |p, c| Denial {
            marker_file: opt(p.marker_file, c.marker_file),
            marker_dir_name: opt(p.marker_dir_name, c.marker_dir_name),
            facade_note: opt(p.facade_note, c.facade_note),
        }),
        seccomp: nested(parent.seccomp, child.seccomp, |p, c| Seccomp {
            lift: list(p.lift, c.lift),
            deny: list(p.deny, c.deny),
        }),
        resources: nested(parent.resources, child.resources, |p, c| Resources {
            memory: opt(p.memory, c.memory),
            pids: opt(p.pids, c.pids),
            cpu: opt(p.cpu, c.cpu),
            open_files: opt(p.open_files, c.open_files),
        }),
        devices: list(parent.devices, child.devices),
        enforcement: nested(parent.enforcement, child.enforcement, |p, c| Enforcement {
            require: opt(p.require, c.require),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_override_lists_merge_without_duplicates() {
        let parent: Profile = serde_json::from_str(
            r#"{"network":{"mode":"filtered","allow_domain":["a.com","b.com"],
                "network_prompt":{"enabled":true,"prompt_timeout_secs":60}},
                "enforcement":{"require":["namespaces","seccomp"]}}"#,
        )
        .unwrap();
        let child: Profile = serde_json::from_str(
            r#"{"extends":"x","network":{"mode":"blocked","allow_domain":["b.com","c.com"],
                "network_prompt":{"enabled":false}},"enforcement":{"require":["seccomp"]}}"#,
        )
        .unwrap();
        let m = merge(parent, child);
        let n = m.network.unwrap();
        assert_eq!(n.mode.as_deref(), Some("blocked"));
        assert_eq!(n.allow_domain, vec!["a.com", "b.com", "c.com"]);
        let np = n.network_prompt.unwrap();
        assert_eq!(np.enabled, Some(false));
        assert_eq!(np.prompt_timeout_secs, Some(60));
        assert_eq!(m.enforcement.unwrap().require.unwrap(), vec!["seccomp"]);
        assert!(m.extends.is_none());
    }
}
