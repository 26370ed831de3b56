//! Skills: `omac.yaml` and `SKILL.md` (model and validation), discovery per harness, the
//! registry files (`sidecar.json`, `skill-config.yaml`) in the workdir and global layers,
//! and skills as OCI layers (digest, content-addressed store, garbage collection).
//!
//! The API the session and the facade use:
//! - [`skill::load`]: load and validate a skill directory;
//! - [`discover::discover`], [`discover::candidates_all`]: the skills in scope of a harness;
//! - [`registry::merged`]: the merged registry; [`registry::update`] to change one layer;
//! - [`skill_config::merged_for`] and [`fields::resolve`]: config values, canonicalised;
//! - [`layer::digest`]: the layer digest of a directory;
//! - [`layer::Store`]: import, verify, locate, pin layers; [`gc::gc`];
//! - [`approval::check`], [`approval::runnable`]: drift detection and the layer to run.

pub mod approval;
pub mod bundle_hash;
pub mod discover;
pub mod env;
pub mod error;
pub mod exclude;
pub mod fields;
pub mod fsutil;
pub mod gc;
pub mod gore;
pub mod layer;
pub mod meta;
pub mod registry;
pub mod skill;
pub mod skill_config;
pub mod skill_md;
pub mod text;
pub mod timefmt;
pub mod yaml;

pub use discover::Scope;
pub use env::Env;
pub use error::{Error, Result, Warning};
pub use meta::Meta;
pub use skill::{load, Skill};
