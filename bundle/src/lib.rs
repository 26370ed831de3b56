//! omac bundles: profiles and their resolution, the generator that turns a session into an
//! OCI runtime bundle (`config.json` + `omac.json`), and the reviewer's views of a bundle.
//!
//! This crate is pure: data in, files out. It runs no process and opens no socket.

pub mod cidr;
pub mod command;
pub mod domain;
pub mod env;
mod error;
pub mod ext;
pub mod generate;
pub mod grants;
pub mod harness;
pub mod host;
pub mod load;
pub mod oci;
pub mod profile;
pub mod protected;
pub mod proxy_env;
pub mod render;
pub mod rights;
pub mod session;
pub mod view;
pub mod walk;
pub mod worktree;

pub use error::Error;
pub use generate::{generate, Bundle};
pub use host::HostFacts;
pub use load::{load, Loaded};
pub use render::{render, Rendered};
pub use session::{Extras, Session};
