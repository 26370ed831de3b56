//! One BPF program from the stack [`crate::compile`] builds.
//!
//! The kernel runs every installed program on each syscall and keeps the most restrictive
//! answer; among answers of the same kind (two errnos) the program installed last wins.
//! Each load costs a JIT compilation and a pass of the kernel's action cache over every
//! syscall number, paid by the agent right before its exec, so the stack is loaded as one
//! program that gives the same answers: the programs run one after another, most
//! restrictive action first (ties: the one installed last first), and a program's "allow"
//! becomes a jump to the next one. The first answer that is not "allow" is then the one
//! the kernel would have kept: no program after it can answer anything more restrictive.
//!
//! That rests on each program answering only "allow", its own action, or (seccompiler's
//! architecture check) kill-process for another architecture, which omac's prologue, a
//! kill-process program and so first, has refused already.

use seccompiler::{sock_filter, BpfProgram};

use crate::compile::{insn, BPF_JA, BPF_RET_K};

/// The instruction class bits, and the class of returns.
const BPF_CLASS: u16 = 0x07;
const BPF_RET: u16 = 0x06;
/// The kernel's limit on one program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// How restrictive a return value is: lower is more (the kernel compares the action bits
/// as a signed number; kill-process, 0x80000000, is the lowest).
pub(crate) fn rank(ret: u32) -> i32 {
    (ret & libc::SECCOMP_RET_ACTION_FULL) as i32
}

/// `stack` (programs in installation order, each with the one action it answers besides
/// "allow") as one program, or None when it would be longer than the kernel accepts or a
/// program returns in a way this cannot follow.
pub fn merge(stack: &[(BpfProgram, u32)]) -> Option<BpfProgram> {
    let mut order: Vec<&(BpfProgram, u32)> = stack.iter().rev().collect();
    // Stable: programs of the same rank keep "installed last, first".
    order.sort_by_key(|(_, action)| rank(*action));
    let total: usize = order.iter().map(|(p, _)| p.len()).sum();
    if total > MAX_INSNS || order.is_empty() {
        return None;
    }
    let mut out: Vec<sock_filter> = Vec::with_capacity(total);
    let last = order.len() - 1;
    for (n, (program, _)) in order.into_iter().enumerate() {
        let next = out.len() + program.len();
        for i in program {
            if i.code & BPF_CLASS == BPF_RET && i.code != BPF_RET_K {
                // A return of the accumulator: its value is unknown here.
                return None;
            }
            let pc = out.len();
            if n != last && i.code == BPF_RET_K && i.k == libc::SECCOMP_RET_ALLOW {
                out.push(insn(BPF_JA, 0, 0, (next - pc - 1) as u32));
            } else {
                out.push(i.clone());
            }
        }
    }
    Some(out)
}
