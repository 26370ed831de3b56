//! Profiles: the file format, validation, merging and lookup.

pub mod builtin;
pub mod error;
pub mod locate;
pub mod merge;
pub mod model;
pub mod parse;
pub mod resolve;
pub mod validate;

pub use error::{Issue, ProfileError};
pub use model::Profile;
pub use parse::parse;
pub use resolve::{Lookup, Resolved};
