//! The listeners: the Unix socket (0600 in a private 0700 directory, a stale socket replaced,
//! a live one left alone) and the optional loopback TCP port.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use crate::Error;

/// Binds the facade's Unix socket.
pub(crate) fn bind_unix(path: &Path) -> Result<UnixListener, Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| {
            Error::config(
                "socket",
                format!("{} has no directory", path.display()),
                "give an absolute socket path inside a private directory",
            )
        })?;
    prepare_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::io(
                    "another process serves the facade socket",
                    path,
                    std::io::Error::from(std::io::ErrorKind::AddrInUse),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::io("removing the stale facade socket", path, e))?;
        }
        Ok(_) => {
            return Err(Error::config(
                "socket",
                format!("{} exists and is not a socket", path.display()),
                "remove that file or choose another socket path",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("checking the facade socket path", path, e)),
    }
    let listener =
        UnixListener::bind(path).map_err(|e| Error::io("binding the facade socket", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("setting the facade socket to 0600", path, e))?;
    Ok(listener)
}

/// Creates the socket directory 0700, or checks that an existing one is ours and private.
fn prepare_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io("creating the facade socket directory", dir, e))?;
            // The mode passed above is filtered by the umask; make sure.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("setting the socket directory to 0700", dir, e))
        }
        Err(e) => Err(Error::io("checking the facade socket directory", dir, e)),
        Ok(meta) => {
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if !meta.is_dir() {
                return Err(Error::config(
                    "socket",
                    format!("{} is not a directory", dir.display()),
                    "put the socket in a private directory",
                ));
            }
            if meta.uid() != me || meta.mode() & 0o077 != 0 {
                return Err(Error::config(
                    "socket",
                    format!(
                        "the socket directory {} has owner {} and mode {:o}",
                        dir.display(),
                        meta.uid(),
                        meta.mode() & 0o7777
                    ),
                    format!("use a directory owned by uid {me} with mode 0700 (or one that does not exist yet)"),
                ));
            }
            Ok(())
        }
    }
}

/// Binds `127.0.0.1:port` (never another address).
pub(crate) fn bind_tcp(port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
        Error::io(
            "binding the facade's TCP port",
            format!("127.0.0.1:{port}"),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::DirBuilderExt;

    #[test]
    fn socket_is_private_and_stale_one_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("run/bridge.sock");
        let l = bind_unix(&sock).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sock), 0o600);
        assert_eq!(mode(sock.parent().unwrap()), 0o700);
        // A live socket is not taken over.
        assert!(bind_unix(&sock).is_err());
        drop(l);
        // A stale one is replaced.
        assert!(sock.exists());
        let _l = bind_unix(&sock).unwrap();
    }

    #[test]
    fn refuses_open_directories_and_non_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_dir(&open).unwrap_err().to_string();
        assert!(e.contains("mode 755"), "{e}");
        let private = tmp.path().join("private");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .unwrap();
        let file = private.join("f");
        std::fs::write(&file, "x").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let e = bind_unix(&file).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }
}
