//! A compact program for filters whose default is "allow" (the agent's, and profiles that
//! edit it): one binary search over the syscall numbers that have rules, then, for each such
//! number, its rules in the order the kernel would weigh the stack that [`crate::compile`]
//! otherwise builds (see `merge`): most restrictive action first, the first matching rule
//! answers, anything else is allowed.
//!
//! Why: the size of the program is paid at every start. The kernel checks it, translates it,
//! compiles it to machine code and runs it once per syscall number for its action cache,
//! right before the agent's exec, and frees it when the agent exits. The stacked programs
//! (seccompiler's chains, one per action) took the default policy to 473 instructions, and
//! a sandbox's start 0.2 to 0.3 ms longer than a filter of 35; this program says the same in
//! about a third of that. Filters it cannot express within classic BPF's short jumps, or
//! whose default is not "allow", keep the stacked programs.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram};

use crate::compile::{
    insn, BPF_JA, BPF_JEQ_K, BPF_JGE_K, BPF_LD_W_ABS, BPF_RET_K, SECCOMP_DATA_ARCH, SECCOMP_DATA_NR,
};

const BPF_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const BPF_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
/// Where the arguments start in `struct seccomp_data` (little-endian: low word first).
const ARGS: u32 = 16;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A comparison of one argument with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `arg & mask == value`.
    Masked(u64),
}

/// One condition: argument `index` compared as 64 bits (`wide`) or its low 32 bits only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cond {
    pub index: u8,
    pub wide: bool,
    pub cmp: Cmp,
    pub value: u64,
}

/// Alternatives, each a conjunction of conditions; an empty one always matches.
pub(crate) type Alternatives = Vec<Vec<Cond>>;

/// What a syscall number meets, in order: (return value, alternatives).
pub(crate) type Decisions = BTreeMap<u32, Vec<(u32, Alternatives)>>;

/// The program for `decisions` on the architecture `arch` (another kills the process, as do
/// x32 numbers when `x32` is set). None when a conditional jump would be too long.
pub(crate) fn program(arch: u32, x32: bool, decisions: &Decisions) -> Option<BpfProgram> {
    let mut a = Asm::default();
    let allow = a.label();
    let native = a.label();
    a.op(BPF_LD_W_ABS, SECCOMP_DATA_ARCH, None, None);
    a.op(BPF_JEQ_K, arch, Some(native), None);
    a.ret(libc::SECCOMP_RET_KILL_PROCESS);
    a.bind(native);
    a.op(BPF_LD_W_ABS, SECCOMP_DATA_NR, None, None);
    if x32 {
        let below = a.label();
        a.op(BPF_JGE_K, X32_SYSCALL_BIT, None, Some(below));
        a.ret(libc::SECCOMP_RET_KILL_PROCESS);
        a.bind(below);
    }
    let ranges = ranges(decisions);
    // Numbers whose first rule always matches are answered in the search itself.
    let blocks: BTreeMap<u32, usize> = decisions
        .iter()
        .filter(|(_, rules)| always(rules).is_none())
        .map(|(n, _)| (*n, a.label()))
        .collect();
    search(&mut a, &ranges, &blocks, allow);
    for (nr, label) in &blocks {
        a.bind(*label);
        if !block(&mut a, &decisions[nr]) {
            a.ret(libc::SECCOMP_RET_ALLOW);
        }
    }
    a.bind(allow);
    a.ret(libc::SECCOMP_RET_ALLOW);
    a.finish()
}

/// The return value of `rules` when the first of them always matches.
fn always(rules: &[(u32, Alternatives)]) -> Option<u32> {
    match rules.first() {
        Some((ret, alternatives)) if alternatives.iter().any(Vec::is_empty) => Some(*ret),
        _ => None,
    }
}

/// What a range of numbers meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    /// No rule: allowed.
    Allow,
    /// Always this return value.
    Ret(u32),
    /// The block of this number's rules.
    Block(u32),
}

/// The number line from 0 cut where the answer changes: (first number, what it meets).
/// Neighbours that always get the same return value share a range.
fn ranges(decisions: &Decisions) -> Vec<(u32, Leaf)> {
    let mut out: Vec<(u32, Leaf)> = vec![(0, Leaf::Allow)];
    for (&n, rules) in decisions {
        let leaf = always(rules).map_or(Leaf::Block(n), Leaf::Ret);
        let len = out.len();
        match out.last_mut() {
            Some(last) if last.0 == n => {
                last.1 = leaf;
                if len >= 2 && out[len - 2].1 == leaf && matches!(leaf, Leaf::Ret(_)) {
                    out.pop();
                }
            }
            _ => out.push((n, leaf)),
        }
        if let Some(after) = n.checked_add(1) {
            out.push((after, Leaf::Allow));
        }
    }
    out
}

/// A binary search over `ranges` (the number is in the accumulator): each leaf allows,
/// returns, or jumps to a number's block.
fn search(a: &mut Asm, ranges: &[(u32, Leaf)], blocks: &BTreeMap<u32, usize>, allow: usize) {
    if let [(_, only)] = ranges {
        match only {
            Leaf::Allow => a.ja(allow),
            Leaf::Ret(r) => a.ret(*r),
            Leaf::Block(n) => a.ja(blocks[n]),
        }
        return;
    }
    let mid = ranges.len() / 2;
    let upper = a.label();
    a.op(BPF_JGE_K, ranges[mid].0, Some(upper), None);
    search(a, &ranges[..mid], blocks, allow);
    a.bind(upper);
    search(a, &ranges[mid..], blocks, allow);
}

/// One number's rules; falls through when none matches. True when it always returns
/// (an unconditional rule).
fn block(a: &mut Asm, rules: &[(u32, Alternatives)]) -> bool {
    for (ret, alternatives) in rules {
        if alternatives.iter().any(Vec::is_empty) {
            a.ret(*ret);
            return true;
        }
        // Alternatives of one action may be tried in any order; those that test one bit
        // each, or one value each, of the same argument are tested together.
        let mut bits: BTreeMap<u8, u32> = BTreeMap::new();
        let mut values: BTreeMap<(u8, u32), Vec<u32>> = BTreeMap::new();
        let mut others = Vec::new();
        for conds in alternatives {
            match conds.as_slice() {
                [Cond {
                    index,
                    wide: false,
                    cmp: Cmp::Masked(m),
                    value,
                }] if m.count_ones() == 1 && value == m => {
                    *bits.entry(*index).or_default() |= *m as u32;
                }
                [Cond {
                    index,
                    wide: true,
                    cmp: Cmp::Eq,
                    value,
                }] => values
                    .entry((*index, (value >> 32) as u32))
                    .or_default()
                    .push(*value as u32),
                _ => others.push(conds),
            }
        }
        for (index, mask) in bits {
            let next = a.label();
            a.op(BPF_LD_W_ABS, ARGS + 8 * u32::from(index), None, None);
            a.op(BPF_JSET_K, mask, None, Some(next));
            a.ret(*ret);
            a.bind(next);
        }
        for ((index, hi), lows) in values {
            let (next, hit) = (a.label(), a.label());
            let low = ARGS + 8 * u32::from(index);
            a.op(BPF_LD_W_ABS, low + 4, None, None);
            a.op(BPF_JEQ_K, hi, None, Some(next));
            a.op(BPF_LD_W_ABS, low, None, None);
            let (last, rest) = lows.split_last().expect("a group has a value");
            for v in rest {
                a.op(BPF_JEQ_K, *v, Some(hit), None);
            }
            a.op(BPF_JEQ_K, *last, None, Some(next));
            a.bind(hit);
            a.ret(*ret);
            a.bind(next);
        }
        for conds in others {
            let next = a.label();
            for c in conds {
                check(a, c, next);
            }
            a.ret(*ret);
            a.bind(next);
        }
    }
    false
}

/// Falls through when `c` holds, jumps to `fail` when it does not.
fn check(a: &mut Asm, c: &Cond, fail: usize) {
    let low = ARGS + 8 * u32::from(c.index);
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    if !c.wide {
        a.op(BPF_LD_W_ABS, low, None, None);
        last_word(a, c.cmp, lo, fail);
        return;
    }
    let pass = a.label();
    a.op(BPF_LD_W_ABS, low + 4, None, None);
    match c.cmp {
        Cmp::Eq => a.op(BPF_JEQ_K, hi, None, Some(fail)),
        Cmp::Ne => a.op(BPF_JEQ_K, hi, None, Some(pass)),
        Cmp::Masked(m) => {
            a.op(BPF_AND_K, (m >> 32) as u32, None, None);
            a.op(BPF_JEQ_K, hi, None, Some(fail));
        }
        // Decided by the high words unless they are equal.
        Cmp::Gt | Cmp::Ge => {
            a.op(BPF_JGT_K, hi, Some(pass), None);
            a.op(BPF_JEQ_K, hi, None, Some(fail));
        }
        Cmp::Lt | Cmp::Le => {
            a.op(BPF_JGT_K, hi, Some(fail), None);
            a.op(BPF_JEQ_K, hi, None, Some(pass));
        }
    }
    a.op(BPF_LD_W_ABS, low, None, None);
    last_word(a, c.cmp, lo, fail);
    a.bind(pass);
}

/// The comparison of the word in the accumulator with `v` (the low words, or the only
/// ones): falls through when it holds.
fn last_word(a: &mut Asm, cmp: Cmp, v: u32, fail: usize) {
    match cmp {
        Cmp::Eq => a.op(BPF_JEQ_K, v, None, Some(fail)),
        Cmp::Ne => a.op(BPF_JEQ_K, v, Some(fail), None),
        Cmp::Gt => a.op(BPF_JGT_K, v, None, Some(fail)),
        Cmp::Ge => a.op(BPF_JGE_K, v, None, Some(fail)),
        Cmp::Lt => a.op(BPF_JGE_K, v, Some(fail), None),
        Cmp::Le => a.op(BPF_JGT_K, v, Some(fail), None),
        Cmp::Masked(m) => {
            a.op(BPF_AND_K, m as u32, None, None);
            a.op(BPF_JEQ_K, v, None, Some(fail));
        }
    }
}

/// Instructions with jumps to labels, resolved at the end.
#[derive(Default)]
struct Asm {
    out: Vec<sock_filter>,
    /// Instruction index, then its true and false targets (None: the next instruction).
    jumps: Vec<(usize, Option<usize>, Option<usize>)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.out.len());
    }

    /// An instruction; for a conditional jump, its targets.
    fn op(&mut self, code: u16, k: u32, jt: Option<usize>, jf: Option<usize>) {
        if jt.is_some() || jf.is_some() {
            self.jumps.push((self.out.len(), jt, jf));
        }
        self.out.push(insn(code, 0, 0, k));
    }

    fn ja(&mut self, label: usize) {
        self.jumps.push((self.out.len(), Some(label), None));
        self.out.push(insn(BPF_JA, 0, 0, 0));
    }

    fn ret(&mut self, value: u32) {
        self.out.push(insn(BPF_RET_K, 0, 0, value));
    }

    /// The program, or None when a conditional jump is longer than 255 instructions (or a
    /// label was never placed, or points backwards).
    fn finish(mut self) -> Option<BpfProgram> {
        for (at, jt, jf) in std::mem::take(&mut self.jumps) {
            let offset = |label: Option<usize>| -> Option<usize> {
                match label {
                    None => Some(0),
                    Some(l) => self.labels[l]?.checked_sub(at + 1),
                }
            };
            let (t, f) = (offset(jt)?, offset(jf)?);
            let i = &mut self.out[at];
            if i.code == BPF_JA {
                i.k = u32::try_from(t).ok()?;
            } else {
                i.jt = u8::try_from(t).ok()?;
                i.jf = u8::try_from(f).ok()?;
            }
        }
        Some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::tests::rule;
    use crate::oci::{Action, Arg, LinuxSeccomp, Op};
    use crate::policy::{agent_policy, Edits};

    const NATIVE: u32 = if cfg!(target_arch = "x86_64") {
        0xc000_003e
    } else {
        0xc000_00b7
    };

    /// Runs `prog` on a `struct seccomp_data`, as the kernel does.
    fn exec(prog: &[sock_filter], nr: u32, arch: u32, args: &[u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            let t = match i.code {
                BPF_LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    continue;
                }
                BPF_AND_K => {
                    acc &= i.k;
                    continue;
                }
                BPF_RET_K => return i.k,
                BPF_JA => {
                    pc += i.k as usize;
                    continue;
                }
                BPF_JEQ_K => acc == i.k,
                BPF_JGT_K => acc > i.k,
                BPF_JGE_K => acc >= i.k,
                BPF_JSET_K => acc & i.k != 0,
                c => panic!("opcode {c:#x} not used by the compact program"),
            };
            pc += usize::from(if t { i.jt } else { i.jf });
        }
    }

    /// What the OCI filter means, straight from its rules: a foreign architecture or an x32
    /// number is killed; of the rules that match, the most restrictive action wins (of two
    /// errnos, the larger: the one the stack installs last); nothing matching is allowed.
    fn meaning(f: &LinuxSeccomp, nr: u32, arch: u32, args: &[u64; 6]) -> u32 {
        if arch != NATIVE || (cfg!(target_arch = "x86_64") && nr >= X32_SYSCALL_BIT) {
            return libc::SECCOMP_RET_KILL_PROCESS;
        }
        let holds = |a: &Arg| {
            let v = args[a.index as usize];
            match a.op {
                Op::Equal => v == a.value,
                Op::NotEqual => v != a.value,
                Op::Less => v < a.value,
                Op::LessOrEqual => v <= a.value,
                Op::Greater => v > a.value,
                Op::GreaterOrEqual => v >= a.value,
                Op::MaskedEqual => v & a.value == a.value_two.unwrap(),
            }
        };
        f.syscalls
            .iter()
            .filter(|s| {
                s.names
                    .iter()
                    .any(|n| crate::syscalls::number(n) == Some(i64::from(nr)))
                    && s.args.iter().all(holds)
            })
            .map(|s| match s.action {
                Action::Allow => libc::SECCOMP_RET_ALLOW,
                Action::Errno => {
                    libc::SECCOMP_RET_ERRNO | s.errno_ret.unwrap_or(libc::EPERM as u32)
                }
                Action::Kill | Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
                Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
                Action::Trap => libc::SECCOMP_RET_TRAP,
                Action::Log => libc::SECCOMP_RET_LOG,
                a => panic!("{a:?} not compiled"),
            })
            .min_by_key(|ret| (crate::merge::rank(*ret), std::cmp::Reverse(*ret)))
            .unwrap_or(libc::SECCOMP_RET_ALLOW)
    }

    fn arg(index: u32, op: Op, value: u64, value_two: Option<u64>) -> Arg {
        Arg {
            index,
            value,
            value_two,
            op,
        }
    }

    /// Every comparison, wide and narrow values, several actions on one number, an
    /// unconditional rule absorbing conditional ones, and alternatives.
    fn mixed() -> LinuxSeccomp {
        let big = 0x1_0000_0002u64;
        LinuxSeccomp::allowing_all_but(vec![
            rule(
                &["read"],
                Action::Errno,
                Some(5),
                vec![arg(0, Op::Equal, big, None)],
            ),
            rule(
                &["read"],
                Action::Errno,
                Some(9),
                vec![arg(0, Op::NotEqual, 7, None)],
            ),
            rule(
                &["write"],
                Action::Trap,
                None,
                vec![arg(1, Op::Less, big, None)],
            ),
            rule(
                &["write"],
                Action::Log,
                None,
                vec![arg(1, Op::LessOrEqual, 3, None)],
            ),
            rule(
                &["openat"],
                Action::KillThread,
                None,
                vec![arg(2, Op::Greater, big, None)],
            ),
            rule(
                &["openat"],
                Action::Errno,
                None,
                vec![arg(2, Op::GreaterOrEqual, 2, None)],
            ),
            rule(
                &["close"],
                Action::Errno,
                None,
                vec![arg(0, Op::MaskedEqual, 0xff0, Some(0x20))],
            ),
            rule(
                &["close"],
                Action::Errno,
                None,
                vec![arg(
                    0,
                    Op::MaskedEqual,
                    0xf_0000_0000,
                    Some(big & 0xf_0000_0000),
                )],
            ),
            rule(&["getpid", "uname"], Action::KillProcess, None, vec![]),
            rule(
                &["uname"],
                Action::Errno,
                Some(3),
                vec![arg(0, Op::Equal, 1, None)],
            ),
            rule(
                &["fstat"],
                Action::Errno,
                Some(2),
                vec![arg(0, Op::Equal, 1, None), arg(1, Op::Greater, 2, None)],
            ),
            rule(&["fstat"], Action::Errno, Some(2), vec![]),
            rule(
                &["mmap"],
                Action::Allow,
                None,
                vec![arg(0, Op::Equal, 1, None)],
            ),
            rule(
                &["dup"],
                Action::Errno,
                None,
                vec![arg(0, Op::MaskedEqual, 0x10, Some(0x10))],
            ),
            rule(
                &["dup"],
                Action::Errno,
                None,
                vec![arg(0, Op::MaskedEqual, 0x4, Some(0x4))],
            ),
            rule(
                &["dup"],
                Action::Errno,
                None,
                vec![arg(1, Op::MaskedEqual, 0x4, Some(0x4))],
            ),
            rule(
                &["dup"],
                Action::Errno,
                Some(4),
                vec![arg(0, Op::MaskedEqual, 0x2, Some(0x2))],
            ),
            rule(
                &["dup"],
                Action::Errno,
                None,
                vec![arg(0, Op::MaskedEqual, 0x3, Some(0x3))],
            ),
            rule(
                &["pipe"],
                Action::Trap,
                None,
                vec![arg(0, Op::Equal, 10, None)],
            ),
            rule(
                &["pipe"],
                Action::Trap,
                None,
                vec![arg(0, Op::Equal, 11, None)],
            ),
            rule(
                &["pipe"],
                Action::Trap,
                None,
                vec![arg(0, Op::Equal, big, None)],
            ),
            rule(
                &["pipe"],
                Action::Trap,
                None,
                vec![arg(1, Op::Equal, 12, None)],
            ),
            rule(
                &["pipe"],
                Action::Errno,
                None,
                vec![arg(0, Op::Equal, 13, None)],
            ),
        ])
    }

    /// The compact program gives the filter's meaning for every architecture, number and
    /// a spread of arguments (each around the values the rules compare with, in both
    /// halves), for the default policy and for a filter using every comparison.
    #[test]
    fn the_compact_program_means_what_the_filter_says() {
        for filter in [agent_policy(&Edits::default()).unwrap(), mixed()] {
            let d = crate::compile::decisions_for_tests(&filter);
            let prog = program(NATIVE, cfg!(target_arch = "x86_64"), &d).expect("compact");
            let mut values: Vec<u64> = vec![0, 1, 2, 3, 7, u64::MAX, u32::MAX as u64];
            for s in &filter.syscalls {
                for a in &s.args {
                    for v in [a.value, a.value_two.unwrap_or(0)] {
                        values.extend([v, v.wrapping_add(1), v.wrapping_sub(1), v << 32, v >> 32]);
                        values.extend([v | 0x1_0000_0000, v & 0xffff_ffff]);
                    }
                }
            }
            values.sort_unstable();
            values.dedup();
            let mut numbers: Vec<u32> = (0..600).collect();
            numbers.extend([X32_SYSCALL_BIT | 39, X32_SYSCALL_BIT, u32::MAX]);
            let (mut refused, mut allowed) = (0, 0);
            for arch in [NATIVE, 0x4000_0003, 0x1234] {
                for &nr in &numbers {
                    let has_rules = d.contains_key(&nr);
                    let arg_sets: Vec<[u64; 6]> = if has_rules && arch == NATIVE {
                        values
                            .iter()
                            .flat_map(|a| values.iter().map(move |b| [*a, *b, *b, *a, 0, 0]))
                            .collect()
                    } else {
                        vec![[0; 6], [u64::MAX; 6]]
                    };
                    for args in &arg_sets {
                        let want = meaning(&filter, nr, arch, args);
                        let got = exec(&prog, nr, arch, args);
                        assert_eq!(got, want, "arch {arch:#x} nr {nr} args {args:x?}");
                        if want == libc::SECCOMP_RET_ALLOW {
                            allowed += 1;
                        } else {
                            refused += 1;
                        }
                    }
                }
            }
            assert!(refused > 1000 && allowed > 1000, "{refused} {allowed}");
        }
    }

    /// The default policy's program is a fraction of the stacked one, and a number without
    /// rules is answered after a few instructions.
    #[test]
    fn the_default_policy_is_small_and_searched() {
        let filter = agent_policy(&Edits::default()).unwrap();
        let compiled = crate::compile(&filter).unwrap();
        assert_eq!(compiled.programs().len(), 1);
        let n = compiled.instruction_count();
        assert!(n < 200, "{n} instructions");
        let getpid = crate::syscalls::number("getpid").unwrap() as u32;
        let (ret, steps) = crate::compile::tests::run(&compiled.programs()[0], getpid, NATIVE, 0);
        assert_eq!(ret, libc::SECCOMP_RET_ALLOW);
        assert!(steps <= 14, "{steps} instructions for getpid");
    }

    /// Too many numbers for short jumps: no compact program (the stack is used).
    #[test]
    fn a_filter_too_large_for_short_jumps_has_no_compact_program() {
        let mut d = Decisions::new();
        for nr in (0..2000).step_by(2) {
            d.insert(nr, vec![(libc::SECCOMP_RET_ERRNO | 1, vec![vec![]])]);
        }
        assert!(program(NATIVE, true, &d).is_none());
    }
}
