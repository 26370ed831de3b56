//! The environment and command line of a sidecar (reference §1.3), built from scratch: later
//! entries win, secrets last. Secret values go straight into the spawn; never on argv.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::spec::SidecarSpec;

/// Applies the sidecar's environment to `cmd` (which starts from an empty environment).
pub(crate) fn apply(
    cmd: &mut tokio::process::Command,
    spec: &SidecarSpec,
    port: u16,
    host: &dyn Fn(&str) -> Option<OsString>,
) {
    cmd.env_clear();
    for name in &spec.base_env_passthrough {
        if let Some(v) = host(name) {
            cmd.env(name, v);
        }
    }
    for name in &spec.env_passthrough {
        if let Some(v) = host(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("SIDECAR_PORT", port.to_string());
    cmd.env("SIDECAR_SKILL", &spec.skill);
    cmd.env("OMAC_WORKDIR", &spec.workdir);
    if let Some(d) = &spec.harness_skills_dir {
        cmd.env("OMAC_HARNESS_SKILLS_DIR", d);
    }
    for (k, v) in &spec.config {
        cmd.env(k, v);
    }
    for (k, v) in &spec.secrets {
        cmd.env(k, v.expose());
    }
}

/// Expands `${SIDECAR_PORT}` / `$SIDECAR_PORT` in one argument; any other `${NAME}` or
/// `$NAME` becomes empty (the Go omac's `os.Expand` with a map holding only SIDECAR_PORT).
pub(crate) fn expand(arg: &str, port: u16) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(j) => (&inner[..j], j + 2),
                None => {
                    out.push('$');
                    rest = after;
                    continue;
                }
            }
        } else {
            let n = after
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if n == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            (&after[..n], n)
        };
        if name == "SIDECAR_PORT" {
            out.push_str(&port.to_string());
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The sidecar's argv: expanded, with a relative program path (`scripts/run`) made absolute
/// inside the skill directory; a bare name (`python3`) is looked up in the sidecar's PATH.
pub(crate) fn argv(command: &[String], dir: &Path, port: u16) -> Vec<String> {
    let mut v: Vec<String> = command.iter().map(|a| expand(a, port)).collect();
    if let Some(first) = v.first_mut() {
        let p = PathBuf::from(&*first);
        if p.is_relative() && first.contains('/') {
            *first = dir.join(p).to_string_lossy().into_owned();
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use std::collections::HashMap;

    #[test]
    fn expands_only_the_port() {
        assert_eq!(expand("--port=${SIDECAR_PORT}", 81), "--port=81");
        assert_eq!(expand("$SIDECAR_PORT", 81), "81");
        assert_eq!(expand("a${HOME}b$USER-c", 1), "ab-c");
        assert_eq!(expand("cost: $5 ${x", 1), "cost: $5 ${x".replace("$5", ""));
        assert_eq!(expand("100%$", 1), "100%$");
        assert_eq!(expand("plain", 1), "plain");
    }

    #[test]
    fn relative_programs_run_from_the_skill() {
        let a = argv(
            &["scripts/run.sh".into(), "${SIDECAR_PORT}".into()],
            Path::new("/store/x"),
            5,
        );
        assert_eq!(a, vec!["/store/x/scripts/run.sh".to_string(), "5".into()]);
        let b = argv(&["python3".into()], Path::new("/s"), 5);
        assert_eq!(b, vec!["python3".to_string()]);
    }

    #[test]
    fn environment_is_built_from_scratch_in_order() {
        let mut spec = SidecarSpec::new("echo-rest", "echo", "/s", vec!["x".into()], "/w");
        spec.base_env_passthrough = vec!["PATH".into(), "HOME".into(), "MISSING".into()];
        spec.env_passthrough = vec!["ECHO_API_KEY".into(), "EMPTY".into(), "SIDECAR_PORT".into()];
        spec.config = vec![
            ("ECHO_MODE".into(), "demo".into()),
            ("HOME".into(), "/cfg".into()),
        ];
        spec.secrets = vec![("ECHO_API_KEY".into(), Secret::new("from-keychain"))];
        spec.harness_skills_dir = Some(".claude/skills".into());
        let host: HashMap<&str, &str> = [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("ECHO_API_KEY", "from-host"),
            ("EMPTY", ""),
            ("SIDECAR_PORT", "666"),
            ("SECRET_OF_HOST", "never"),
        ]
        .into();
        let lookup = |k: &str| host.get(k).map(OsString::from);
        let mut cmd = tokio::process::Command::new("x");
        apply(&mut cmd, &spec, 4242, &lookup);
        let env: HashMap<String, Option<String>> = cmd
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |k: &str| env.get(k).cloned().flatten();
        assert_eq!(get("PATH").as_deref(), Some("/usr/bin"));
        assert_eq!(
            get("HOME").as_deref(),
            Some("/cfg"),
            "config after passthrough"
        );
        assert_eq!(
            get("EMPTY").as_deref(),
            Some(""),
            "present-but-empty is passed"
        );
        assert_eq!(
            get("SIDECAR_PORT").as_deref(),
            Some("4242"),
            "omac's value wins"
        );
        assert_eq!(get("SIDECAR_SKILL").as_deref(), Some("echo-rest"));
        assert_eq!(get("OMAC_WORKDIR").as_deref(), Some("/w"));
        assert_eq!(
            get("OMAC_HARNESS_SKILLS_DIR").as_deref(),
            Some(".claude/skills")
        );
        assert_eq!(get("ECHO_MODE").as_deref(), Some("demo"));
        assert_eq!(
            get("ECHO_API_KEY").as_deref(),
            Some("from-keychain"),
            "secrets last"
        );
        assert!(!env.contains_key("SECRET_OF_HOST") && !env.contains_key("MISSING"));
        // Nothing of the host leaks in through inheritance.
        assert!(env.values().all(|v| v.is_some()));
    }
}
