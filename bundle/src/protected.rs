//! Paths that hold credentials or shell start-up code: masked in every granted tree unless
//! a profile's `override_deny` lifts an entry (reference §4.5, plus the host secrets a
//! sandbox mapped to root could otherwise read as their owner).

/// Protected on every platform (`~` is the user's home).
pub const COMMON: &[&str] = &[
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.gcloud",
    "~/.kube",
    "~/.docker",
    "~/.git-credentials",
    "~/.netrc",
    "~/.npmrc",
    "~/.vault-token",
    "~/.credentials",
    "~/.secrets",
    "~/.keys",
    "~/.pki",
    "~/.terraform.d",
    "~/.config/op",
    "~/.bash_history",
    "~/.zsh_history",
    "~/.history",
    "~/.python_history",
    "~/.zshrc",
    "~/.zprofile",
    "~/.zshenv",
    "~/.zlogin",
    "~/.zlogout",
    "~/.bashrc",
    "~/.bash_profile",
    "~/.bash_login",
    "~/.bash_logout",
    "~/.profile",
    "~/.config/fish",
    "~/.env",
    "~/.envrc",
];

/// Protected on Linux in addition to [`COMMON`].
pub const LINUX: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "~/.password-store",
    "~/.local/share/keyrings",
    "~/.config/keyrings",
    "~/.mozilla",
    "~/.config/google-chrome",
    "~/.config/chromium",
    "~/.config/microsoft-edge",
    "~/.config/BraveSoftware",
    // Readable by their owner: a sandbox started by root runs as root (mapped to itself).
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
];

/// Protected on macOS in addition to [`COMMON`] (used by the Seatbelt backend).
pub const MACOS: &[&str] = &[
    "/var/run/docker.sock",
    "~/Library/Keychains",
    "/Library/Keychains",
    "~/.password-store",
    "~/.1password",
    "~/Library/Group Containers/2BUA8C4S2C.com.1password",
    "~/Library/Application Support/1Password",
    "~/Library/Containers/com.1password.1password",
    "~/Library/Application Support/Google/Chrome",
    "~/Library/Application Support/Firefox",
    "~/Library/Application Support/Microsoft Edge",
    "~/Library/Application Support/Arc",
    "~/Library/Application Support/Brave Browser",
    "~/Library/Safari",
    "~/Library/Messages",
    "~/Library/Mail",
    "~/Library/Cookies",
    "~/Library/Containers/com.apple.Safari",
    "~/Library/Application Support/MobileSync",
];

/// Basenames masked wherever they appear inside the workdir or a granted tree.
pub const ENV_FILES: &[&str] = &[".env", ".envrc"];

/// The protected list for the platform omac runs on.
pub fn for_this_platform() -> Vec<&'static str> {
    let extra = if cfg!(target_os = "macos") {
        MACOS
    } else {
        LINUX
    };
    COMMON.iter().chain(extra).copied().collect()
}

/// omac's own control files inside a workdir: kept read-only so that an agent cannot
/// widen its next session by editing them.
pub const WORKDIR_CONTROL: &[&str] = &[
    ".omac",
    ".opencode/sidecar.json",
    ".opencode/skill-config.yaml",
];

/// omac's own configuration in the user's home (profiles, registry): read-only whenever a
/// profile grants a writable tree that holds it (`$XDG_CONFIG_HOME` honoured).
pub const USER_CONTROL: &[&str] = &["$XDG_CONFIG_HOME/omac", "~/.config/omac"];

/// Control paths that are directories: when one is missing inside a writable tree, an empty
/// read-only tmpfs takes its place, so that the agent cannot create it (a planted
/// `.omac/profiles/default.json` would widen the next session).
pub const CONTROL_DIRS: &[&str] = &[".omac", "$XDG_CONFIG_HOME/omac", "~/.config/omac"];
