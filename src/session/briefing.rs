//! The sandbox briefing: what the agent is told about the sandbox it runs in, so that it
//! works with it instead of against it (where its files are, how to call skills, what a
//! refusal looks like and what to do then). Written from the bundle, so it is accurate;
//! `sandbox.briefing` in config.yaml replaces it.

use omac_bundle::harness::{Briefing, Harness};
use omac_bundle::profile::Resolved;

/// The variable a harness plugin reads the briefing from.
pub const ENV_VAR: &str = "OMAC_SANDBOX_BRIEFING";

/// What the briefing says, taken from the resolved profile (the bundle is generated with
/// the briefing in it, so it cannot be read from the bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The work directory.
    pub workdir: String,
    /// `none`, `read`, `write` or `readwrite`.
    pub access: String,
    /// `blocked`, `filtered` or `open`.
    pub mode: String,
    /// Undecided hosts are asked about.
    pub prompt: bool,
    /// Host loopback ports reachable.
    pub open_ports: Vec<u16>,
    /// Ports published to the host.
    pub publish_ports: Vec<u16>,
}

impl Facts {
    /// The facts of profile `p` for `workdir`.
    pub fn of(p: &Resolved, workdir: &std::path::Path) -> Facts {
        let n = p.profile.network.clone().unwrap_or_default();
        let ports = |v: &[i64]| -> Vec<u16> {
            let mut p: Vec<u16> = v
                .iter()
                .filter_map(|x| u16::try_from(*x).ok())
                .filter(|x| *x != 0 && !omac_bundle::generate::RESERVED_PORTS.contains(x))
                .collect();
            p.sort();
            p.dedup();
            p
        };
        Facts {
            workdir: workdir.display().to_string(),
            access: p
                .profile
                .workdir
                .as_ref()
                .and_then(|w| w.access.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "none".into()),
            mode: n.mode.clone().unwrap_or_else(|| "filtered".into()),
            prompt: n
                .network_prompt
                .as_ref()
                .is_some_and(|x| x.enabled.unwrap_or(true)),
            open_ports: ports(&n.open_port),
            publish_ports: ports(&n.publish_port),
        }
    }
}

/// The briefing for a session with these facts and active mounts.
pub fn text(f: &Facts, mounts: &[String]) -> String {
    let mut t = String::new();
    t.push_str(
        "You are running inside the omac sandbox. It protects the user's machine; work with \
         it, never around it.\n\n",
    );
    let access = match f.access.as_str() {
        "readwrite" => "read and write",
        "read" => "read only",
        "write" => "write only",
        _ => "no access",
    };
    t.push_str(&format!(
        "- Files: the project at {} ({access}). The rest of the disk is hidden or read-only; \
         your home directory is a scratch space that is discarded at the end, except the \
         tool state granted to you. /tmp ($TMPDIR) is private to this session.\n",
        f.workdir
    ));
    t.push_str(
        "- Credentials (~/.ssh, ~/.aws, ~/.gnupg, keychains, shell histories, .env files) are \
         deliberately out of reach. Do not look for them or for ways around the sandbox; if a \
         task needs one, ask the user.\n",
    );
    match f.mode.as_str() {
        "blocked" => t.push_str("- Network: none. Only the omac facade below is reachable.\n"),
        "filtered" => {
            t.push_str(
                "- Network: through omac's proxy only (HTTP_PROXY/HTTPS_PROXY are set; git over \
                 SSH works through GIT_SSH_COMMAND). Hosts outside the allow list are refused \
                 with HTTP 403 and the header X-Omac-Sandbox: denied",
            );
            if f.prompt {
                t.push_str(", or the user is asked");
            }
            t.push_str(
                ". A refusal is deliberate: say what you needed and why, and let the \
                        user decide.\n",
            );
        }
        _ => t.push_str("- Network: open.\n"),
    }
    if !f.open_ports.is_empty() {
        let ports: Vec<String> = f.open_ports.iter().map(u16::to_string).collect();
        t.push_str(&format!(
            "- Host services you may reach at 127.0.0.1: ports {}.\n",
            ports.join(", ")
        ));
    }
    if !f.publish_ports.is_empty() {
        let ports: Vec<String> = f.publish_ports.iter().map(u16::to_string).collect();
        t.push_str(&format!(
            "- A server you start on 127.0.0.1 port {} is reachable by the user at the same \
             address on their machine.\n",
            ports.join(", ")
        ));
    }
    t.push_str(
        "- Skills: REST services outside the sandbox, reached through the omac facade: \
         $OMAC_BASE (plain HTTP, e.g. `curl \"$OMAC_BASE\"` lists them) or the Unix socket \
         $OMAC_SOCKET (`curl --unix-socket \"$OMAC_SOCKET\" http://omac/`).",
    );
    if mounts.is_empty() {
        t.push_str(" No skill is active in this session.\n");
    } else {
        t.push_str(&format!(
            " Active: {}. GET /<mount>/ returns a skill's SKILL.md (read it first); \
             $OMAC_<MOUNT>_BASE is each skill's base URL.\n",
            mounts
                .iter()
                .map(|m| format!("/{m}/"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if f.mode != "blocked" {
        t.push_str(
            "- Tool caches (npm, pip, cargo, go) point into a cache omac keeps between sessions.\n",
        );
    }
    t
}

/// The arguments that hand `text` to `harness` on its command line (none for a harness
/// that reads [`ENV_VAR`]).
pub fn args(harness: &Harness, text: &str) -> Vec<String> {
    match harness.briefing {
        Briefing::Environment => Vec::new(),
        Briefing::AppendSystemPrompt => vec!["--append-system-prompt".into(), text.to_string()],
        // codex parses a `-c` value as TOML: a quoted string cannot be misread as a table.
        Briefing::CodexConfig => vec![
            "-c".into(),
            format!(
                "instructions={}",
                serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_harness_gets_it_its_way() {
        let h = |n| omac_bundle::harness::find(n).unwrap();
        assert!(args(h("opencode"), "x").is_empty());
        assert_eq!(args(h("claude"), "x"), vec!["--append-system-prompt", "x"]);
        assert_eq!(
            args(h("codex"), "a \"b\"\nc"),
            vec!["-c", r#"instructions="a \"b\"\nc""#]
        );
    }
}
