//! The agent's environment (reference §4.6): fixed variables in `config.json`, host
//! variables passed by name at run time, code-injection variables never passed, and the
//! profile's `deny_vars` removing anything last.

use crate::profile::model::Environment;

/// Always passed (removable only with `deny_vars`).
pub const BASE_ALLOW: &[&str] = &[
    "OMAC_*",
    "HOME",
    "PATH",
    "PWD",
    "TMPDIR",
    "LANG",
    "LC_*",
    "TERM",
    "COLORTERM",
];

/// Passed when a profile's `allow_vars` is empty or lists other names.
pub const CONVENIENCE_ALLOW: &[&str] = &[
    "SHELL",
    "USER",
    "LOGNAME",
    "TZ",
    "EDITOR",
    "VISUAL",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "NPM_CONFIG_PREFIX",
    "DISPLAY",
];

/// Never passed from the host, whatever a profile allows: they make programs run code.
pub const BLOCKED: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "CDPATH",
    "GLOBIGNORE",
    "PROMPT_COMMAND",
    "IFS",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "RUBYLIB",
    "GEM_PATH",
    "GEM_HOME",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "DOTNET_STARTUP_HOOKS",
    "GOFLAGS",
    "OP_SERVICE_ACCOUNT_TOKEN",
    "OP_CONNECT_TOKEN",
    "OP_CONNECT_HOST",
    "LD_*",
    "DYLD_*",
    "BASH_FUNC_*",
    "OP_SESSION_*",
];

/// Whether `name` matches a pattern: a name, `PREFIX*`, or `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Whether any pattern matches.
pub fn matches_any<S: AsRef<str>>(patterns: &[S], name: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), name))
}

/// The passthrough patterns for a profile (Go omac's tiers): a list with `*` is used as
/// it is; an empty list means the base and convenience tiers; any other list adds to them.
pub fn passthrough(env: Option<&Environment>, harness_vars: &[&str]) -> Vec<String> {
    let listed = env.map(|e| e.allow_vars.clone()).unwrap_or_default();
    let mut out: Vec<String> = if listed.iter().any(|v| v == "*") {
        vec!["*".to_string()]
    } else {
        BASE_ALLOW
            .iter()
            .chain(CONVENIENCE_ALLOW)
            .map(|s| s.to_string())
            .chain(listed)
            .collect()
    };
    out.extend(harness_vars.iter().map(|s| s.to_string()));
    let mut seen = Vec::new();
    out.retain(|v| {
        let new = !seen.contains(v);
        seen.push(v.clone());
        new
    });
    out
}

/// The environment the runtime gives the agent: host variables allowed by `passthrough`
/// (not blocked, not set by `fixed`), then `fixed`, then `deny` removing names last.
pub fn compose(
    host: impl IntoIterator<Item = (String, String)>,
    fixed: &[String],
    passthrough: &[String],
    blocked: &[String],
    deny: &[String],
) -> Vec<String> {
    let fixed_names: Vec<&str> = fixed
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    let mut out: Vec<String> = host
        .into_iter()
        .filter(|(k, _)| {
            matches_any(passthrough, k)
                && !matches_any(blocked, k)
                && !fixed_names.contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.extend(fixed.iter().cloned());
    out.retain(|kv| {
        let name = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        !matches_any(deny, name)
    });
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_go_rules() {
        let empty = passthrough(None, &[]);
        assert!(empty.contains(&"SHELL".to_string()) && empty.contains(&"LC_*".to_string()));
        let star = passthrough(
            Some(&Environment {
                allow_vars: vec!["*".into()],
                deny_vars: vec![],
            }),
            &[],
        );
        assert_eq!(star, vec!["*"]);
        let extra = passthrough(
            Some(&Environment {
                allow_vars: vec!["GOPATH".into()],
                deny_vars: vec![],
            }),
            &["ANTHROPIC_API_KEY"],
        );
        assert!(
            extra.contains(&"GOPATH".into())
                && extra.contains(&"HOME".into())
                && extra.contains(&"ANTHROPIC_API_KEY".into())
        );
    }

    #[test]
    fn blocked_and_denied_variables_never_pass() {
        let host = vec![
            ("HOME".to_string(), "/h".to_string()),
            ("LD_PRELOAD".to_string(), "/evil.so".to_string()),
            ("AWS_SECRET".to_string(), "x".to_string()),
            ("TERM".to_string(), "xterm".to_string()),
            ("PATH".to_string(), "/host".to_string()),
        ];
        let out = compose(
            host,
            &["PATH=/usr/bin".into(), "TERM_FIXED=1".into()],
            &["*".into()],
            &BLOCKED.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &["AWS_*".into(), "TERM*".into()],
        );
        assert_eq!(out, vec!["HOME=/h", "PATH=/usr/bin"]);
    }
}
