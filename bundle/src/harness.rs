//! Harness descriptors: one place per agent that says how omac runs it.

/// How a harness is told about the sandbox it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Briefing {
    /// It reads `OMAC_SANDBOX_BRIEFING` (a plugin or extension does).
    Environment,
    /// `--append-system-prompt TEXT` on its command line.
    AppendSystemPrompt,
    /// `-c instructions=TEXT` on its command line.
    CodexConfig,
}

/// Everything omac needs to know to run one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Harness {
    /// Canonical name.
    pub name: &'static str,
    /// Other names accepted on the command line.
    pub aliases: &'static [&'static str],
    /// The program started when no command is given.
    pub binary: &'static str,
    /// Directories under `$HOME` holding its state, granted read-write.
    pub state_dirs: &'static [&'static str],
    /// Files under `$HOME` holding its state, granted read-write.
    pub state_files: &'static [&'static str],
    /// Host environment variables it needs (its own credentials and settings).
    pub env: &'static [&'static str],
    /// The `B` of `.B/skills` where its skills live.
    pub skills_base: &'static str,
    /// How it receives the sandbox briefing.
    pub briefing: Briefing,
}

/// The harnesses omac knows, default first.
pub const HARNESSES: &[Harness] = &[
    Harness {
        name: "opencode",
        aliases: &["oc"],
        binary: "opencode",
        state_dirs: &[
            ".local/share/opencode",
            ".local/state/opencode",
            ".config/opencode",
            ".cache/opencode",
            ".opencode",
        ],
        state_files: &[],
        env: &[
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "OPENROUTER_API_KEY",
            "GEMINI_API_KEY",
            "GROQ_API_KEY",
            "MISTRAL_API_KEY",
            "DEEPSEEK_API_KEY",
            "XAI_API_KEY",
            "OPENCODE_CONFIG",
        ],
        skills_base: "opencode",
        briefing: Briefing::Environment,
    },
    Harness {
        name: "claude-code",
        aliases: &["claude", "cc"],
        binary: "claude",
        state_dirs: &[".claude", ".local/share/claude"],
        state_files: &[".claude.json"],
        env: &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_MODEL",
        ],
        skills_base: "claude",
        briefing: Briefing::AppendSystemPrompt,
    },
    Harness {
        name: "codex",
        aliases: &["cx"],
        binary: "codex",
        state_dirs: &[".codex"],
        state_files: &[],
        env: &["OPENAI_API_KEY", "OPENAI_BASE_URL"],
        skills_base: "codex",
        briefing: Briefing::CodexConfig,
    },
];

/// The default harness.
pub fn default_harness() -> &'static Harness {
    &HARNESSES[0]
}

/// The harness called `token` (canonical name or alias).
pub fn find(token: &str) -> Option<&'static Harness> {
    HARNESSES
        .iter()
        .find(|h| h.name == token || h.aliases.contains(&token))
}

/// Every accepted name, for error messages: `opencode (oc), claude-code (claude, cc), ...`.
pub fn names() -> String {
    HARNESSES
        .iter()
        .map(|h| {
            if h.aliases.is_empty() {
                h.name.to_string()
            } else {
                format!("{} ({})", h.name, h.aliases.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_one_descriptor_each() {
        assert_eq!(find("cc").unwrap().name, "claude-code");
        assert_eq!(find("claude").unwrap().name, "claude-code");
        assert_eq!(find("oc").unwrap().name, "opencode");
        assert_eq!(find("cx").unwrap().name, "codex");
        assert!(find("vim").is_none());
        let mut all: Vec<&str> = HARNESSES
            .iter()
            .flat_map(|h| std::iter::once(h.name).chain(h.aliases.iter().copied()))
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a name belongs to two harnesses");
    }
}
