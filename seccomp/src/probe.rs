//! Asks the running kernel how it shows the i386 `int 0x80` entry point to seccomp.
//!
//! omac's prologue kills any syscall whose `seccomp_data.arch` is not the native one, which
//! closes the 32-bit entry point only if the kernel labels those calls `AUDIT_ARCH_I386`.
//! A kernel (or hypervisor) that runs them but labels them x86_64 hands the filter the
//! wrong syscall numbers, and no filter can close that: doctor reports it.

/// How the kernel presents an `int 0x80` system call to seccomp filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompatEntry {
    /// Labelled i386: omac's filter sees it and kills the process.
    Labelled,
    /// The kernel has no 32-bit entry point (no IA32 emulation): nothing to filter.
    Absent,
    /// Executed but shown to seccomp as an x86_64 call, or not shown at all: a filter
    /// cannot refuse it, so 32-bit syscalls pass the syscall policy on this kernel.
    Unfiltered,
    /// This architecture has no such entry point, or the probe itself failed.
    NotApplicable,
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::CompatEntry;
    use crate::compile::{
        insn, BPF_JEQ_K, BPF_LD_W_ABS, BPF_RET_K, SECCOMP_DATA_ARCH, SECCOMP_DATA_NR,
    };
    use seccompiler::sock_filter;

    const LABELLED: i32 = 10;
    const MISLABELLED: i32 = 11;
    const UNSEEN: i32 = 12;
    const OTHER: i32 = 13;
    const TAG_I386: u32 = 77;
    const TAG_X86_64: u32 = 78;
    const I386_GETPID: i64 = 20;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    /// A filter that answers a distinct errno for "i386" and for "x86_64 with the i386
    /// number", and allows everything else.
    fn probe_filter() -> Vec<sock_filter> {
        let errno = libc::SECCOMP_RET_ERRNO;
        vec![
            insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
            insn(BPF_JEQ_K, 0, 1, AUDIT_ARCH_I386),
            insn(BPF_RET_K, 0, 0, errno | TAG_I386),
            insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
            // The same number as an x86_64 call (writev).
            insn(BPF_JEQ_K, 0, 1, I386_GETPID as u32),
            insn(BPF_RET_K, 0, 0, errno | TAG_X86_64),
            insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]
    }

    pub fn compat_entry() -> CompatEntry {
        let mut filter = probe_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            // seccompiler's sock_filter has the kernel's layout, as libc's does.
            filter: filter.as_mut_ptr().cast(),
        };
        // SAFETY: the child only makes raw syscalls and exits; the parent waits for it.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return CompatEntry::NotApplicable;
        }
        if pid == 0 {
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &prog as *const libc::sock_fprog,
                    ) != 0
                {
                    libc::_exit(OTHER);
                }
                let ret: i64;
                std::arch::asm!("int 0x80", inlateout("rax") I386_GETPID => ret, options(nostack));
                libc::_exit(match ret {
                    r if r == -(TAG_I386 as i64) => LABELLED,
                    r if r == -(TAG_X86_64 as i64) => MISLABELLED,
                    r if r > 0 => UNSEEN,
                    _ => OTHER,
                });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return CompatEntry::NotApplicable;
        }
        if libc::WIFSIGNALED(status) {
            // SIGSEGV: the kernel has no int 0x80 gate (IA32 emulation off).
            return CompatEntry::Absent;
        }
        match libc::WEXITSTATUS(status) {
            LABELLED => CompatEntry::Labelled,
            MISLABELLED | UNSEEN => CompatEntry::Unfiltered,
            _ => CompatEntry::NotApplicable,
        }
    }
}

/// Forks a short-lived child that makes one `int 0x80` call under a probe filter and
/// reports how the kernel labelled it.
#[cfg(target_arch = "x86_64")]
pub fn compat_entry() -> CompatEntry {
    imp::compat_entry()
}

/// Forks a short-lived child that makes one `int 0x80` call under a probe filter and
/// reports how the kernel labelled it.
#[cfg(not(target_arch = "x86_64"))]
pub fn compat_entry() -> CompatEntry {
    CompatEntry::NotApplicable
}
