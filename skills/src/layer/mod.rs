//! Skills as OCI layers: the digest of a skill directory, the content-addressed store the
//! sidecars run from, and garbage collection of layers no registry references.

pub mod index;
pub mod store;
pub mod tarball;

pub use store::{GcReport, Imported, Pin, Store};
pub use tarball::digest;
