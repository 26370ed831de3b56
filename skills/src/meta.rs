//! `omac.yaml`: the sidecar contract of a skill, with every field and rule of the Go omac
//! (reference §2.1), read as gopkg.in/yaml.v3 reads it.
//!
//! Unknown keys are warnings (the Go omac ignores them silently); a field that breaks a rule
//! is refused with its path, the rule and the fix.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result, Warning};
use crate::{gore, yaml};

/// The file name of a skill's sidecar contract.
pub const META_FILE: &str = "omac.yaml";

/// `omac.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Meta {
    /// The skill's name (required). Registration is keyed on the directory name.
    #[serde(default, deserialize_with = "yaml::string")]
    pub name: String,
    /// Informational.
    #[serde(default, rename = "type", deserialize_with = "yaml::string")]
    pub kind: String,
    /// Informational; not part of the skill's identity (the layer digest is).
    #[serde(default, deserialize_with = "yaml::string")]
    pub version: String,
    /// Informational.
    #[serde(default, deserialize_with = "yaml::string")]
    pub description: String,
    /// Informational.
    #[serde(default, deserialize_with = "yaml::string")]
    pub author: String,
    /// Informational.
    #[serde(default, deserialize_with = "yaml::strings")]
    pub dependencies: Vec<String>,
    /// The sidecar; a skill without one lives entirely inside the sandbox.
    #[serde(default)]
    pub sidecar: Option<Sidecar>,
}

/// `sidecar:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Sidecar {
    /// argv, run from the skill's layer; `${SIDECAR_PORT}` is expanded.
    #[serde(default, deserialize_with = "yaml::strings")]
    pub command: Vec<String>,
    /// The facade mount (`/<mount>/...`); empty means the skill's name.
    #[serde(default, deserialize_with = "yaml::string")]
    pub mount: String,
    /// Host variables copied into the sidecar's environment.
    #[serde(default, deserialize_with = "yaml::strings")]
    pub env_passthrough: Vec<String>,
    /// Secrets, kept in the keychain and injected into the environment.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// Non-secret settings, kept in `skill-config.yaml` and injected into the environment.
    #[serde(default)]
    pub config: Vec<ConfigSpec>,
    /// The health probe.
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Install scripts per OS (`macos`, `linux`, `wsl`), relative to the skill. Shown, never run.
    #[serde(default, deserialize_with = "yaml::string_map")]
    pub install_scripts: BTreeMap<String, String>,
    /// Informational.
    #[serde(default, deserialize_with = "yaml::strings")]
    pub protocols: Vec<String>,
    /// Per-route limits.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// One entry of `sidecar.secrets`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SecretSpec {
    /// Environment variable name (`^[A-Z_][A-Z0-9_]*$`).
    #[serde(default, deserialize_with = "yaml::string")]
    pub name: String,
    /// Shown above the prompt.
    #[serde(default, deserialize_with = "yaml::string")]
    pub description: String,
    /// Default true.
    #[serde(default, deserialize_with = "yaml::opt_bool")]
    pub required: Option<bool>,
    /// A Go regular expression the value must match (unanchored unless `^...$`).
    #[serde(default, deserialize_with = "yaml::string")]
    pub pattern: String,
    /// A host variable whose value is offered as the default.
    #[serde(default, deserialize_with = "yaml::string")]
    pub default_from_env: String,
    /// Parsed but unused (as in the Go omac): prompts read one line.
    #[serde(default, deserialize_with = "yaml::opt_bool")]
    pub multiline: Option<bool>,
}

impl SecretSpec {
    /// Whether the sidecar cannot run without it (default true).
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(true)
    }

    /// Checks `value` against `pattern`; the error says which pattern failed.
    pub fn check(&self, value: &str) -> Result<(), String> {
        check_pattern(&self.name, &self.pattern, value)
    }
}

/// The type of a config field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Free text, optionally matched against `pattern`.
    String,
    /// `true`/`false` (stored canonically).
    Bool,
    /// A base-10 64-bit integer.
    Int,
    /// One of `choices`.
    Enum,
}

impl FieldType {
    /// The name used in `omac.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Bool => "bool",
            FieldType::Int => "int",
            FieldType::Enum => "enum",
        }
    }

    fn parse(s: &str) -> Option<FieldType> {
        match s {
            "" | "string" => Some(FieldType::String),
            "bool" => Some(FieldType::Bool),
            "int" => Some(FieldType::Int),
            "enum" => Some(FieldType::Enum),
            _ => None,
        }
    }
}

/// One entry of `sidecar.config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ConfigSpec {
    /// Environment variable name.
    #[serde(default, deserialize_with = "yaml::string")]
    pub name: String,
    /// Shown above the prompt.
    #[serde(default, deserialize_with = "yaml::string")]
    pub description: String,
    /// `string` (default), `bool`, `int` or `enum`, as written.
    #[serde(default, rename = "type", deserialize_with = "yaml::string")]
    pub type_name: String,
    /// Default true.
    #[serde(default, deserialize_with = "yaml::opt_bool")]
    pub required: Option<bool>,
    /// Used when nothing is stored.
    #[serde(default, deserialize_with = "yaml::string")]
    pub default: String,
    /// A host variable used when nothing is stored and there is no `default`.
    #[serde(default, deserialize_with = "yaml::string")]
    pub default_from_env: String,
    /// A Go regular expression (type `string` only).
    #[serde(default, deserialize_with = "yaml::string")]
    pub pattern: String,
    /// The allowed values (type `enum` only).
    #[serde(default, deserialize_with = "yaml::strings")]
    pub choices: Vec<String>,
}

impl ConfigSpec {
    /// Whether the sidecar cannot run without it (default true).
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(true)
    }

    /// The field's type (`string` when unset; validation refuses unknown names).
    pub fn field_type(&self) -> FieldType {
        FieldType::parse(&self.type_name).unwrap_or(FieldType::String)
    }
}

/// `sidecar.health` as written (zero or absent values mean the default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HealthSpec {
    /// Path probed with GET.
    #[serde(default, deserialize_with = "yaml::string")]
    pub path: String,
    /// Delay before the first probe.
    #[serde(default)]
    pub initial_delay_ms: Option<u64>,
    /// Give up after this long (counted after the initial delay).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Time between probes.
    #[serde(default)]
    pub interval_ms: Option<u64>,
}

/// The health probe with the Go omac's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Default `/status`.
    pub path: String,
    /// Default 200.
    pub initial_delay_ms: u64,
    /// Default 5000.
    pub timeout_ms: u64,
    /// Default 500.
    pub interval_ms: u64,
}

/// `sidecar.limits`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Limits {
    /// Request body cap; 0 or absent means the facade's default.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Idle timeout of a route connection; 0 or absent means the facade's default.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

impl Sidecar {
    /// The facade mount: `mount`, else the skill's name.
    pub fn mount_or<'a>(&'a self, skill: &'a str) -> &'a str {
        if self.mount.is_empty() {
            skill
        } else {
            &self.mount
        }
    }

    /// The health probe with defaults applied.
    pub fn health(&self) -> Health {
        let h = self.health.clone().unwrap_or_default();
        let or = |v: Option<u64>, d: u64| v.filter(|&x| x != 0).unwrap_or(d);
        Health {
            path: if h.path.is_empty() {
                "/status".to_string()
            } else {
                h.path
            },
            initial_delay_ms: or(h.initial_delay_ms, 200),
            timeout_ms: or(h.timeout_ms, 5000),
            interval_ms: or(h.interval_ms, 500),
        }
    }

    /// The install script declared for `os` (`linux`, `macos`, `wsl`), relative to the skill.
    pub fn install_script_for(&self, os: &str) -> Option<&str> {
        self.install_scripts
            .get(os)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The declared secret called `name`.
    pub fn secret(&self, name: &str) -> Option<&SecretSpec> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// The declared config field called `name`.
    pub fn field(&self, name: &str) -> Option<&ConfigSpec> {
        self.config.iter().find(|s| s.name == name)
    }
}

/// Checks `value` against a Go `pattern` (empty: anything goes).
pub fn check_pattern(name: &str, pattern: &str, value: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Ok(());
    }
    let re = gore::compile(pattern).map_err(|e| format!("invalid pattern for {name}: {e}"))?;
    if re.is_match(value) {
        Ok(())
    } else {
        Err(format!("value for {name} does not match /{pattern}/"))
    }
}

/// `^[A-Z_][A-Z0-9_]*$`, the rule for secret, config and passthrough names.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('A'..='Z' | '_'))
        && chars.all(|c| matches!(c, 'A'..='Z' | '0'..='9' | '_'))
}

/// `^[a-z0-9][a-z0-9-]*$`, the rule for facade mounts.
pub fn is_mount(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// Reads `omac.yaml` text: the model, or the first field that breaks the YAML shape.
/// Unknown keys come back as warnings. Call [`Meta::validate`] next.
pub fn parse(text: &str, file: &Path) -> Result<(Meta, Vec<Warning>)> {
    let (meta, unknown): (Meta, _) = yaml::parse(text).map_err(|e| {
        let fix = fix_for_shape(&e.path);
        Error::invalid(file, e.path, e.message, fix)
    })?;
    let warnings = unknown
        .iter()
        .map(|path| Warning {
            file: file.to_path_buf(),
            field: path.clone(),
            message: unknown_field_message(path),
        })
        .collect();
    Ok((meta, warnings))
}

impl Meta {
    /// Checks every rule of the Go omac (and a few it missed), returning advice as warnings.
    /// `dir_name` is the skill directory's name, when known.
    pub fn validate(&self, file: &Path, dir_name: Option<&str>) -> Result<Vec<Warning>> {
        let mut warnings = Vec::new();
        let warn = |w: &mut Vec<Warning>, field: &str, message: String| {
            w.push(Warning {
                file: file.to_path_buf(),
                field: field.to_string(),
                message,
            })
        };
        let bad =
            |field: &str, rule: String, fix: &str| Err(Error::invalid(file, field, rule, fix));

        if self.name.is_empty() {
            return bad(
                "name",
                "is required".into(),
                "add `name: <the skill's directory name>` at the top of omac.yaml",
            );
        }
        if let Some(dir) = dir_name {
            if dir != self.name {
                warn(
                    &mut warnings,
                    "name",
                    format!(
                        "{:?} differs from the directory name {dir:?}; omac registers the skill \
                         as {dir:?} (rename one so they agree)",
                        self.name
                    ),
                );
            }
        }
        let Some(sc) = &self.sidecar else {
            return Ok(warnings);
        };

        if sc.command.is_empty() {
            return bad(
                "sidecar.command",
                "is required and must not be empty".into(),
                "give the sidecar's argv as a list, e.g. `command: [python3, scripts/sidecar.py]`",
            );
        }
        if sc.command[0].trim().is_empty() {
            return bad(
                "sidecar.command[0]",
                "the program is empty".into(),
                "put the program (or interpreter) first, e.g. `command: [python3, scripts/sidecar.py]`",
            );
        }
        if !sc.mount.is_empty() && !is_mount(&sc.mount) {
            return bad(
                "sidecar.mount",
                format!("{:?} must match ^[a-z0-9][a-z0-9-]*$", sc.mount),
                "use lowercase letters, digits and '-', e.g. `mount: echo`",
            );
        }

        let mut declared: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, s) in sc.secrets.iter().enumerate() {
            let field = format!("sidecar.secrets[{i}]");
            if !is_env_name(&s.name) {
                return bad(
                    &format!("{field}.name"),
                    format!(
                        "{:?} is not a valid environment variable name (^[A-Z_][A-Z0-9_]*$)",
                        s.name
                    ),
                    "use upper case letters, digits and '_', e.g. `name: API_TOKEN`",
                );
            }
            if !s.pattern.is_empty() {
                if let Err(e) = gore::compile(&s.pattern) {
                    return bad(
                        &format!("{field}.pattern"),
                        format!("is not a valid regular expression: {e}"),
                        "write a Go (RE2) regular expression, e.g. `pattern: ^[A-Za-z0-9_-]{20,}$`",
                    );
                }
            }
            if let Some(other) = declared.insert(&s.name, "secrets") {
                return bad(
                    &format!("{field}.name"),
                    format!("{:?} is declared by both {other} and secrets", s.name),
                    "give each secret and config field its own name",
                );
            }
            if s.multiline == Some(true) {
                warn(
                    &mut warnings,
                    &format!("{field}.multiline"),
                    "multiline secrets are read as a single line (as in the Go omac); use \
                     `omac secrets set --stdin` to store a value with newlines"
                        .into(),
                );
            }
        }

        for (i, c) in sc.config.iter().enumerate() {
            let field = format!("sidecar.config[{i}]");
            if !is_env_name(&c.name) {
                return bad(
                    &format!("{field}.name"),
                    format!(
                        "{:?} is not a valid environment variable name (^[A-Z_][A-Z0-9_]*$)",
                        c.name
                    ),
                    "use upper case letters, digits and '_', e.g. `name: API_BASE_URL`",
                );
            }
            let Some(ty) = FieldType::parse(&c.type_name) else {
                return bad(
                    &format!("{field}.type"),
                    format!("{:?} is not one of: string, bool, int, enum", c.type_name),
                    "use `type: string`, `bool`, `int` or `enum` (with `choices`)",
                );
            };
            check_field_spec(c, ty, &field)
                .map_err(|(f, rule, fix)| Error::invalid(file, f, rule, fix))?;
            if let Some(other) = declared.insert(&c.name, "config") {
                return bad(
                    &format!("{field}.name"),
                    format!("{:?} is declared by both {other} and config", c.name),
                    "give each secret and config field its own name",
                );
            }
        }

        for (i, p) in sc.env_passthrough.iter().enumerate() {
            let field = format!("sidecar.env_passthrough[{i}]");
            if !is_env_name(p) {
                return bad(
                    &field,
                    format!("{p:?} is not a valid environment variable name (^[A-Z_][A-Z0-9_]*$)"),
                    "list host variable names such as HTTPS_PROXY",
                );
            }
            if declared.get(p.as_str()) == Some(&"config") {
                return bad(
                    &field,
                    format!("{p:?} is declared by both env_passthrough and config"),
                    "pick one: a config field (stored by omac) or a passthrough (copied from the host)",
                );
            }
        }

        if let Some(h) = &sc.health {
            if !h.path.is_empty() && !h.path.starts_with('/') {
                return bad(
                    "sidecar.health.path",
                    format!("{:?} must start with '/'", h.path),
                    "write the probe path as `/status`",
                );
            }
        }

        for (os, script) in &sc.install_scripts {
            let field = format!("sidecar.install_scripts.{os}");
            if !matches!(os.as_str(), "linux" | "macos" | "wsl") {
                warn(
                    &mut warnings,
                    &field,
                    format!(
                        "{os:?} is not an OS omac knows (linux, macos, wsl); it is never shown"
                    ),
                );
            }
            let p = Path::new(script);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                warn(
                    &mut warnings,
                    &field,
                    format!("{script:?} should be a path inside the skill (it is shown relative to the skill directory)"),
                );
            }
        }
        Ok(warnings)
    }
}

type FieldProblem = (String, String, &'static str);

fn check_field_spec(c: &ConfigSpec, ty: FieldType, field: &str) -> Result<(), FieldProblem> {
    let problem = |f: &str, rule: String, fix: &'static str| Err((f.to_string(), rule, fix));
    match ty {
        FieldType::String => {
            if !c.choices.is_empty() {
                return problem(
                    &format!("{field}.choices"),
                    "is only valid with type: enum".into(),
                    "remove `choices`, or set `type: enum`",
                );
            }
            if !c.pattern.is_empty() {
                if let Err(e) = gore::compile(&c.pattern) {
                    return problem(
                        &format!("{field}.pattern"),
                        format!("is not a valid regular expression: {e}"),
                        "write a Go (RE2) regular expression",
                    );
                }
            }
        }
        FieldType::Bool | FieldType::Int => {
            if !c.pattern.is_empty() || !c.choices.is_empty() {
                return problem(
                    field,
                    format!("type: {} does not accept pattern or choices", ty.as_str()),
                    "remove `pattern` and `choices`",
                );
            }
        }
        FieldType::Enum => {
            if c.choices.is_empty() {
                return problem(
                    &format!("{field}.choices"),
                    "type: enum requires a non-empty list of choices".into(),
                    "add `choices: [a, b]`",
                );
            }
            if !c.pattern.is_empty() {
                return problem(
                    &format!("{field}.pattern"),
                    "type: enum does not accept a pattern".into(),
                    "remove `pattern`; the choices are the rule",
                );
            }
        }
    }
    if !c.default.is_empty() {
        if let Err(e) = crate::fields::canonicalise(c, &c.default) {
            return problem(
                &format!("{field}.default"),
                format!("{:?} is not valid: {e}", c.default),
                "make the default a valid value of the field's type (and pattern or choices)",
            );
        }
    }
    Ok(())
}

/// Known keys per level, for "did you mean" on unknown ones.
fn known_keys(parent: &str) -> &'static [&'static str] {
    match parent {
        "" => &[
            "name",
            "type",
            "version",
            "description",
            "author",
            "dependencies",
            "sidecar",
        ],
        "sidecar" => &[
            "command",
            "mount",
            "env_passthrough",
            "secrets",
            "config",
            "health",
            "install_scripts",
            "protocols",
            "limits",
        ],
        "sidecar.secrets.N" => &[
            "name",
            "description",
            "required",
            "pattern",
            "default_from_env",
            "multiline",
        ],
        "sidecar.config.N" => &[
            "name",
            "description",
            "type",
            "required",
            "default",
            "default_from_env",
            "pattern",
            "choices",
        ],
        "sidecar.health" => &["path", "initial_delay_ms", "timeout_ms", "interval_ms"],
        "sidecar.limits" => &["max_body_bytes", "idle_timeout_secs"],
        _ => &[],
    }
}

fn unknown_field_message(path: &str) -> String {
    let normalised: Vec<&str> = path
        .split('.')
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit()) {
                "N"
            } else {
                s
            }
        })
        .collect();
    let (parent, key) = match normalised.split_last() {
        Some((k, rest)) => (rest.join("."), *k),
        None => (String::new(), path),
    };
    let hint = known_keys(&parent)
        .iter()
        .map(|k| (crate::text::distance(k, key), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    format!("unknown field, ignored (the Go omac ignores it too){hint}")
}

fn fix_for_shape(path: &str) -> &'static str {
    let p: String = path
        .split('.')
        .map(|s| match s.find('[') {
            Some(i) => &s[..i],
            None => s,
        })
        .collect::<Vec<_>>()
        .join(".");
    match p.as_str() {
        "sidecar.command" => {
            "write the argv as a list, e.g. `command: [python3, scripts/sidecar.py]`"
        }
        "dependencies"
        | "sidecar.env_passthrough"
        | "sidecar.protocols"
        | "sidecar.config.choices" => "write a list, e.g. `[a, b]`",
        "sidecar.secrets" => {
            "write a list of secrets, e.g. `secrets: [{name: API_TOKEN, required: true}]`"
        }
        "sidecar.config" => {
            "write a list of fields, e.g. `config: [{name: MODE, type: enum, choices: [a, b]}]`"
        }
        "sidecar.secrets.required" | "sidecar.config.required" | "sidecar.secrets.multiline" => {
            "write true or false"
        }
        "sidecar.health.initial_delay_ms"
        | "sidecar.health.timeout_ms"
        | "sidecar.health.interval_ms" => {
            "write a whole number of milliseconds, 0 or more (0 means the default)"
        }
        "sidecar.limits.max_body_bytes" => {
            "write a whole number of bytes, 0 or more (0 means the facade's default)"
        }
        "sidecar.limits.idle_timeout_secs" => {
            "write a whole number of seconds, 0 or more (0 means the default)"
        }
        "sidecar.install_scripts" => {
            "write a map from OS to script, e.g. `install_scripts: {linux: install/linux.sh}`"
        }
        "sidecar" | "sidecar.health" | "sidecar.limits" => {
            "write a map of the keys documented for it"
        }
        _ => "correct the YAML at that field (see the omac.yaml reference in CREATING_A_SKILL.md)",
    }
}
