//! The inputs of one bundle: a resolved profile, a harness, a command and the host facts.

use std::path::PathBuf;

use crate::ext::{FacadeMount, Sidecar, SkillLayer};
use crate::grants::Access;
use crate::harness::Harness;
use crate::host::HostFacts;
use crate::profile::Resolved;

/// Everything `generate` needs; the same session always gives the same bundle.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    /// The resolved profile.
    pub profile: &'a Resolved,
    /// The harness whose state is granted, if any.
    pub harness: Option<&'static Harness>,
    /// The command (argv); empty means the harness's binary.
    pub command: Vec<String>,
    /// The host facts.
    pub host: &'a HostFacts,
    /// What a session adds beyond the profile (skills, caches, variables).
    pub extras: Extras,
}

/// Additions made by `omac start` and skills on top of the profile.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Variables set in `config.json` (they win over passed-through host values).
    pub env: Vec<(String, String)>,
    /// Extra host paths granted (tool caches and the like).
    pub grants: Vec<(PathBuf, Access)>,
    /// Skill layers of the session.
    pub skills: Vec<SkillLayer>,
    /// Sidecars to start.
    pub sidecars: Vec<Sidecar>,
    /// Facade routes.
    pub facade_mounts: Vec<FacadeMount>,
}
