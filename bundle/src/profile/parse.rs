//! Reading one profile file: JSON with precise error positions, then semantic checks.

use super::error::{Issue, ProfileError};
use super::model::Profile;
use super::validate::validate;

/// Parses and checks the profile `text` read from `file`.
pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let profile: Profile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        syntax_error(file, &path, &inner)
    })?;
    de.end().map_err(|e| syntax_error(file, ".", &e))?;
    validate(&profile, text, file)?;
    Ok(profile)
}

fn syntax_error(file: &str, path: &str, e: &serde_json::Error) -> ProfileError {
    let full = e.to_string();
    // serde_json appends " at line L column C"; the position is reported separately.
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    let fix = if let Some(rest) = message.strip_prefix("unknown field ") {
        let field = rest.split(',').next().unwrap_or(rest);
        match rest.split_once("expected one of ") {
            Some((_, known)) => {
                format!("remove {field} or correct its spelling; this object accepts {known}")
            }
            None => format!("remove {field}"),
        }
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        match rest.split_once(", expected ") {
            Some((_, want)) => format!("write {want} here"),
            None => "write a value of the right type".to_string(),
        }
    } else if message.starts_with("missing field") {
        "add the field".to_string()
    } else if e.is_syntax() || e.is_eof() {
        "fix the JSON syntax at this position".to_string()
    } else {
        String::new()
    };
    let position = (e.line() > 0).then(|| (e.line(), e.column()));
    ProfileError {
        file: file.to_string(),
        issues: vec![Issue {
            path: if path.is_empty() {
                ".".into()
            } else {
                path.to_string()
            },
            position,
            message,
            fix,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "p.json").unwrap_err().to_string()
    }

    #[test]
    fn go_profiles_load_unchanged() {
        let go = r#"{
  "meta": {"name": "default"},
  "workdir": {"access": "readwrite"},
  "filesystem": {"read": ["~/.gitconfig", "$HOME/.nvm"], "allow": ["/opt/x"], "write": ["/var/tmp/out"],
                 "allow_unix_dir": ["/run/user/1000/podman"], "deny": [".env", "*.key", "~/secret"],
                 "override_deny": ["~/.npmrc"]},
  "network": {"mode": "filtered", "allow_domain": ["*.github.com", "pypi.org:443"], "deny_domain": ["evil.com"],
              "listen_port": [4097], "allow_tcp_connect": [22], "open_port": [0, 5432],
              "network_prompt": {"enabled": true, "prompt_timeout_secs": 60, "on_unavailable": "deny"},
              "enforcement": "kernel", "upstream_proxy": "http://proxy:3128", "no_proxy": ["corp.example"],
              "proxy_injection": ["jvm", "node"]},
  "environment": {"allow_vars": ["OMAC_*", "HOME"], "deny_vars": ["AWS_*"]},
  "denial": {"marker_file": "denied", "marker_dir_name": ".omac-denied", "facade_note": "ask"}
}"#;
        parse(go, "go.json").unwrap();
    }

    #[test]
    fn unknown_field_names_file_path_position_and_fix() {
        let e = err("{\n  \"network\": {\n    \"mdoe\": \"open\"\n  }\n}");
        assert!(e.starts_with("p.json:3:"), "{e}");
        assert!(e.contains("network.mdoe"), "{e}");
        assert!(e.contains("fix: remove `mdoe`"), "{e}");
        assert!(e.contains("`mode`"), "{e}");
    }

    #[test]
    fn wrong_type_says_what_to_write() {
        let e = err(r#"{"network": {"listen_port": "4097"}}"#);
        assert!(e.contains("network.listen_port"), "{e}");
        assert!(e.contains("fix: write a sequence"), "{e}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let e = err("{\"network\": {\"listen_port\": [80,\n 70000]}}");
        assert!(
            e.starts_with("p.json:2:2: network.listen_port[1]: port 70000 is out of range"),
            "{e}"
        );
        assert!(e.contains("between 1 and 65535"), "{e}");
        let e = err(r#"{"filesystem": {"read": ["relative/dir"]}}"#);
        assert!(
            e.contains("filesystem.read[0]") && e.contains("relative path"),
            "{e}"
        );
        let e = err(r#"{"filesystem": {"deny": ["[unclosed"]}}"#);
        assert!(e.contains("invalid glob"), "{e}");
        let e = err(r#"{"seccomp": {"deny": ["nosuch"]}}"#);
        assert!(e.contains("seccomp.deny[0]") && e.contains("nosuch"), "{e}");
        let e = err(r#"{"enforcement": {"require": ["magic"]}}"#);
        assert!(e.contains("unknown enforcement layer"), "{e}");
        let e = err(r#"{"network": {"allow_private": ["10.0.0.0/8", "127.0.0.0/8"]}}"#);
        assert!(
            e.contains("network.allow_private[1]") && e.contains("not inside a private range"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = parse(
            r#"{"network": {"mode": "wide", "open_port": [-1]}, "workdir": {"access": "all"}}"#,
            "p.json",
        )
        .unwrap_err();
        assert_eq!(e.issues.len(), 3, "{e}");
    }

    #[test]
    fn trailing_garbage_and_bad_syntax_are_refused() {
        assert!(err("{} {}").contains("trailing"));
        assert!(err("{\"meta\": }").contains("fix the JSON syntax"));
    }
}
