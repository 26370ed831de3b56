//! The egress proxy of filtered sessions.
//!
//! A filtered sandbox has its own network namespace with only `lo`; omac's init bridges
//! `127.0.0.1:29171` inside to a Unix socket bind-mounted from the host, where this proxy
//! listens, one socket per session. It serves HTTP/1.1 `CONNECT` tunnels, absolute-URI
//! forwarding of `http://` requests and SOCKS5 on that one socket, under one policy
//! ([`policy`]): hard deny, rules, pinned DNS, then a prompt ([`prompt`]) whose permanent
//! answers are learned in the profile's `.pages.json` ([`pages`]). Every decision goes to an
//! [`audit::Audit`] hook.
//!
//! ```no_run
//! # async fn f(ext: omac_bundle::ext::Extension) -> Result<(), omac_egress::Error> {
//! use std::sync::Arc;
//! let proxy = omac_egress::Builder::from_extension(&ext, Some("/home/u/.config/omac".as_ref()))
//!     .audit(Arc::new(|e: &omac_egress::audit::NetDecision| println!("{e:?}")))
//!     .bind("/run/user/1000/omac/s1/egress.sock".as_ref())?
//!     .spawn();
//! // ... run the sandbox with the socket bind-mounted at /run/omac/egress.sock ...
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

pub mod addr;
pub mod audit;
pub mod dial;
mod error;
mod http;
pub mod ifaddrs;
pub mod open;
pub mod pages;
pub mod policy;
pub mod profile_ref;
pub mod prompt;
pub mod resolve;
mod server;
mod socks;
pub mod test_hooks;
pub mod tunnel;
pub mod upstream;
pub mod verdict;

pub use error::Error;
pub use profile_ref::ProfileRef;
pub use server::{Builder, Egress, Handle};
