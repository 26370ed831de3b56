//! The life channel between the stage and init, a socket pair. The stage never writes to
//! it: its end closing (the stage died, omac was killed) tells init that nothing
//! supervises it any more. init writes to it what the stage must know to end the run:
//! the host paths it created as mount points, which the stage removes once the sandbox's
//! processes are gone, even when omac itself was killed; and, once it has reaped every
//! other process of the sandbox, that the run has ended and with which code. The stage
//! then lets omac go on (it closes its end of the report pipe), and cleans up and waits
//! for init's own exit, in which the kernel tears the sandbox's namespaces down, while
//! omac winds down; omac waits for the stage before it exits.
//!
//! Records are a tag byte and text, each ended by a NUL (a path may hold a newline, never a
//! NUL): `c` a created path, `e` the exit code.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;

/// A new channel: the stage's end, then init's.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::socketpair()
}

/// init: `path` was created on the host as a mount point.
pub fn created(init_end: &OwnedFd, path: &str) {
    send(init_end, b'c', path);
}

/// init: every other process of the sandbox is reaped; the run's code is `code`.
pub fn ended(init_end: &OwnedFd, code: i32) {
    send(init_end, b'e', &code.to_string());
}

fn send(fd: &OwnedFd, tag: u8, text: &str) {
    let mut rec = Vec::with_capacity(text.len() + 2);
    rec.push(tag);
    rec.extend_from_slice(text.as_bytes());
    rec.push(0);
    // The stage may be gone (then nobody needs to know).
    let _ = sys::send_all(fd.as_raw_fd(), &rec);
}

/// What the stage has heard from init so far.
#[derive(Debug, Default)]
pub struct Heard {
    /// Host paths created as mount points, in order.
    pub created: Vec<String>,
    /// The run's code, once init has said the run ended.
    pub ended: Option<i32>,
    partial: Vec<u8>,
}

impl Heard {
    /// Reads, without waiting, whatever init has sent (and, once init is gone, all it
    /// sent: the socket keeps it).
    pub fn take_from(&mut self, stage_end: &OwnedFd) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: a valid buffer of the length given.
            let n = unsafe {
                libc::recv(
                    stage_end.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return;
            }
            self.partial.extend_from_slice(&buf[..n as usize]);
            while let Some(end) = self.partial.iter().position(|b| *b == 0) {
                let rec: Vec<u8> = self.partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&rec[1..rec.len() - 1]).into_owned();
                match rec[0] {
                    b'c' => self.created.push(text),
                    b'e' => self.ended = text.parse().ok(),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_hears_created_paths_and_the_end_even_after_init_is_gone() {
        let (stage, init) = pair().unwrap();
        let mut heard = Heard::default();
        created(&init, "/work/.omac");
        heard.take_from(&stage);
        assert_eq!(heard.created, ["/work/.omac"]);
        assert_eq!(heard.ended, None);
        created(&init, "/work/odd\nname");
        ended(&init, 137);
        drop(init);
        heard.take_from(&stage);
        assert_eq!(heard.created, ["/work/.omac", "/work/odd\nname"]);
        assert_eq!(heard.ended, Some(137));
    }

    #[test]
    fn a_record_split_across_reads_is_kept_until_it_is_whole() {
        let (stage, init) = pair().unwrap();
        let mut heard = Heard::default();
        sys::send_all(init.as_raw_fd(), b"c/a/b").unwrap();
        heard.take_from(&stage);
        assert!(heard.created.is_empty());
        sys::send_all(init.as_raw_fd(), b"c\0e0\0").unwrap();
        heard.take_from(&stage);
        assert_eq!(heard.created, ["/a/bc"]);
        assert_eq!(heard.ended, Some(0));
    }
}
