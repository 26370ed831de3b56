//! omac bundles: profiles and their resolution, the generator that turns a session into an
//! OCI runtime bundle (`config.json` + `omac.json`), and the reviewer's views of a bundle.
//!
//! This crate is pure: data in, files out. It runs no process and opens no socket.

pub mod cidr;
pub mod command;
pub mod denied;
pub mod devices;
pub mod diff;
pub mod domain;
pub mod env;
mod error;
pub mod explain;
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
pub mod schema;
pub mod session;
pub mod verify;
pub mod view;
pub mod walk;
pub mod worktree;

pub use error::Error;
pub use generate::{generate, Bundle};
pub use host::HostFacts;
pub use load::{load, Loaded};
pub use render::{render, Rendered};
pub use session::{Extras, Session};

/// Bundles made on the fly for the unit tests of the reviewer's commands.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    use crate::profile::Lookup;
    use crate::{HostFacts, Loaded, Session};

    /// A scratch root with `home/` and `work/`, and its host facts.
    pub struct Scratch {
        /// Keeps the directory alive.
        pub _t: tempfile::TempDir,
        /// The canonical root.
        pub root: PathBuf,
        /// The host facts for `root/work` and `root/home`.
        pub host: HostFacts,
    }

    /// A fresh scratch root.
    pub fn scratch() -> Scratch {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        for d in ["home/.ssh", "work/sub"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("home/.ssh/id"), "k").unwrap();
        std::fs::write(root.join("work/sub/.env"), "A=1").unwrap();
        let host = HostFacts {
            workdir: root.join("work"),
            home: root.join("home"),
            uid: 1000,
            gid: 1000,
            path: "/usr/bin:/bin".into(),
            vars: Default::default(),
        };
        Scratch { _t: t, root, host }
    }

    impl Scratch {
        /// Generates, writes and loads the bundle of `profile` (JSON) as `name`.
        pub fn bundle(&self, name: &str, profile: &str, extras: crate::Extras) -> Loaded {
            let file = self.root.join(format!("{name}.json"));
            std::fs::write(&file, profile).unwrap();
            let lookup = Lookup::new(None, &self.host.workdir);
            let resolved = lookup.resolve(file.to_str().unwrap()).unwrap();
            let session = Session {
                profile: &resolved,
                harness: None,
                command: vec!["/bin/sh".into()],
                host: &self.host,
                extras,
            };
            let bundle = crate::generate(&session, &mut Vec::new()).unwrap();
            let dir = self.root.join(format!("bundle-{name}"));
            crate::render::write(&dir, &crate::render(&bundle)).unwrap();
            crate::load(&dir).unwrap()
        }

        /// `path` under the scratch root.
        pub fn path(&self, p: &str) -> PathBuf {
            self.root.join(p)
        }
    }

    /// `p` as a string.
    pub fn s(p: &Path) -> String {
        p.display().to_string()
    }
}
