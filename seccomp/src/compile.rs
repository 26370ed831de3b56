//! Compiles an OCI `linux.seccomp` filter to classic BPF, and installs it. A filter whose
//! default is "allow" becomes one compact program (see `compact`) when it fits; the rest of
//! this module builds, with seccompiler, the general form that any filter gets otherwise.
//!
//! seccompiler gives every filter a single match action, so one OCI filter becomes a small
//! stack of BPF programs: one per distinct refusing action (and one for the default action
//! when it is not "allow"), plus omac's own prologue that refuses foreign entry points
//! (i386 `int 0x80`, x32) which seccompiler's arch check would let through or which a
//! bundle might try to admit. Run as a stack, the kernel keeps the most restrictive answer,
//! which gives the OCI meaning "the strictest matching rule wins"; the stack is loaded as
//! one program with the same answers (see `merge`).

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::compact::{Alternatives, Cmp, Cond};
use crate::oci::{Action, Arch, LinuxSeccomp, Op};
use crate::syscalls;
use crate::Error;

/// A filter ready to install: the BPF programs in installation order.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    programs: Vec<BpfProgram>,
}

impl CompiledFilter {
    /// The programs, in the order `install` loads them.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }

    /// Total number of BPF instructions, for reports.
    pub fn instruction_count(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }

    /// Sets no_new_privs and loads every program into the calling thread. The caller must
    /// be single-threaded (omac installs it right before exec).
    pub fn install(&self) -> Result<(), Error> {
        for p in &self.programs {
            seccompiler::apply_filter(p).map_err(|e| Error::Install(e.to_string()))?;
        }
        Ok(())
    }
}

fn target_arch() -> Result<TargetArch, Error> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(Error::UnsupportedArch)
    }
}

/// The secondary entry points of this architecture; a filter that admits them is refused.
fn secondary_arches() -> &'static [Arch] {
    if cfg!(target_arch = "x86_64") {
        &[Arch::X86, Arch::X32]
    } else {
        &[Arch::Arm]
    }
}

/// A refusing or allowing outcome of a rule, the key that groups rules into programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Trap,
    Log,
}

impl Outcome {
    fn of(action: Action, errno: Option<u32>) -> Result<Outcome, Error> {
        Ok(match action {
            Action::Allow => Outcome::Allow,
            Action::Errno => Outcome::Errno(errno.unwrap_or(libc::EPERM as u32)),
            Action::Kill | Action::KillThread => Outcome::KillThread,
            Action::KillProcess => Outcome::KillProcess,
            Action::Trap => Outcome::Trap,
            Action::Log => Outcome::Log,
            Action::Trace | Action::Notify => {
                return Err(Error::Unsupported(format!(
                    "action {} (omac has no tracer or notify listener)",
                    action.spec_name()
                )))
            }
        })
    }

    fn action(self) -> SeccompAction {
        match self {
            Outcome::Allow => SeccompAction::Allow,
            Outcome::Errno(e) => SeccompAction::Errno(e),
            Outcome::KillThread => SeccompAction::KillThread,
            Outcome::KillProcess => SeccompAction::KillProcess,
            Outcome::Trap => SeccompAction::Trap,
            Outcome::Log => SeccompAction::Log,
        }
    }
}

/// An OCI argument condition, checked: what it compares, and how wide. A masked comparison
/// whose mask and value have no high half only looks at the low 32 bits: comparing just
/// those is the same test in half the instructions. Every other comparison takes 64 bits.
fn cond(a: &crate::oci::Arg) -> Result<Cond, Error> {
    let index = u8::try_from(a.index)
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| Error::Invalid(format!("argument index {} (must be 0 to 5)", a.index)))?;
    let (cmp, value) = match a.op {
        Op::NotEqual => (Cmp::Ne, a.value),
        Op::Less => (Cmp::Lt, a.value),
        Op::LessOrEqual => (Cmp::Le, a.value),
        Op::Equal => (Cmp::Eq, a.value),
        Op::GreaterOrEqual => (Cmp::Ge, a.value),
        Op::Greater => (Cmp::Gt, a.value),
        Op::MaskedEqual => (
            Cmp::Masked(a.value),
            a.value_two
                .ok_or_else(|| Error::Invalid("SCMP_CMP_MASKED_EQ without valueTwo".to_string()))?,
        ),
    };
    let narrow = matches!(cmp, Cmp::Masked(_)) && a.value >> 32 == 0 && value >> 32 == 0;
    Ok(Cond {
        index,
        wide: !narrow,
        cmp,
        value,
    })
}

/// An OCI argument condition for seccompiler's programs.
fn condition(a: &crate::oci::Arg) -> Result<SeccompCondition, Error> {
    let c = cond(a)?;
    let op = match c.cmp {
        Cmp::Ne => SeccompCmpOp::Ne,
        Cmp::Lt => SeccompCmpOp::Lt,
        Cmp::Le => SeccompCmpOp::Le,
        Cmp::Eq => SeccompCmpOp::Eq,
        Cmp::Ge => SeccompCmpOp::Ge,
        Cmp::Gt => SeccompCmpOp::Gt,
        Cmp::Masked(mask) => SeccompCmpOp::MaskedEq(mask),
    };
    let len = if c.wide {
        SeccompCmpArgLen::Qword
    } else {
        SeccompCmpArgLen::Dword
    };
    SeccompCondition::new(c.index, len, op, c.value).map_err(|e| Error::Invalid(e.to_string()))
}

/// Rules of one program: syscall number to its alternative conditions (empty = always).
type RuleMap = BTreeMap<i64, Vec<SeccompRule>>;

/// Adds one rule for syscall `nr`: `None` means "always", which absorbs any conditions.
fn add(map: &mut RuleMap, nr: i64, rule: Option<SeccompRule>) {
    match (map.get_mut(&nr), rule) {
        (_, None) => {
            map.insert(nr, Vec::new());
        }
        (None, Some(r)) => {
            map.insert(nr, vec![r]);
        }
        // An empty list already matches unconditionally.
        (Some(existing), Some(_)) if existing.is_empty() => {}
        (Some(existing), Some(r)) => existing.push(r),
    }
}

/// Compiles `filter` for the running architecture: one compact program when its default is
/// "allow" and it fits (see `compact`), else the stack of seccompiler's programs, merged.
pub fn compile(filter: &LinuxSeccomp) -> Result<CompiledFilter, Error> {
    // Checked in full first; the stack's programs are built only when they are the answer.
    let (default, by_outcome, arch) = checked(filter)?;
    if let Some(d) = decisions(filter)? {
        if let Some(p) = crate::compact::program(native_audit_arch(), x32_exists(), &d) {
            return Ok(CompiledFilter { programs: vec![p] });
        }
    }
    let stack = stack(default, by_outcome, arch)?;
    let programs = match crate::merge::merge(&stack) {
        Some(one) => vec![one],
        None => stack.into_iter().map(|(p, _)| p).collect(),
    };
    Ok(CompiledFilter { programs })
}

/// Whether this architecture has the x32 entry point (numbers with bit 30 set).
fn x32_exists() -> bool {
    cfg!(target_arch = "x86_64")
}

/// The compact program's view of `filter` (checked by [`checked`] first): for each syscall
/// number with rules, each refusing outcome's alternatives, in the order the merged stack
/// weighs them (most restrictive first; of two errnos, the one installed last: the larger).
/// None when the default is not "allow".
fn decisions(filter: &LinuxSeccomp) -> Result<Option<crate::compact::Decisions>, Error> {
    if Outcome::of(filter.default_action, filter.default_errno_ret)? != Outcome::Allow {
        return Ok(None);
    }
    let mut by_outcome: BTreeMap<Outcome, BTreeMap<u32, Alternatives>> = BTreeMap::new();
    for s in &filter.syscalls {
        let outcome = Outcome::of(s.action, s.errno_ret)?;
        if outcome == Outcome::Allow {
            continue;
        }
        let conds = s.args.iter().map(cond).collect::<Result<Vec<_>, _>>()?;
        for name in &s.names {
            let nr = syscalls::number(name).ok_or_else(|| Error::UnknownSyscall(name.clone()))?;
            let Ok(nr) = u32::try_from(nr) else {
                return Ok(None);
            };
            let alternatives = by_outcome
                .entry(outcome)
                .or_default()
                .entry(nr)
                .or_default();
            alternatives.push(conds.clone());
        }
    }
    // The stack's installation order is the map's; merged, the last installed comes first
    // among equally restrictive ones.
    let mut order: Vec<(u32, BTreeMap<u32, Alternatives>)> = by_outcome
        .into_iter()
        .map(|(o, m)| (u32::from(o.action()), m))
        .rev()
        .collect();
    order.sort_by_key(|(ret, _)| crate::merge::rank(*ret));
    let mut out = crate::compact::Decisions::new();
    for (ret, map) in order {
        for (nr, alternatives) in map {
            out.entry(nr).or_default().push((ret, alternatives));
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
pub(crate) fn decisions_for_tests(filter: &LinuxSeccomp) -> crate::compact::Decisions {
    decisions(filter).unwrap().unwrap()
}

/// `filter` checked, as the stack of programs the kernel would run (see [`stack`]).
#[cfg(test)]
fn stack_of(filter: &LinuxSeccomp) -> Result<Vec<(BpfProgram, u32)>, Error> {
    let (default, by_outcome, arch) = checked(filter)?;
    stack(default, by_outcome, arch)
}

/// `filter` checked: its default outcome and its other rules grouped by the outcome they
/// lead to, for the stack of programs (see [`stack`]).
fn checked(
    filter: &LinuxSeccomp,
) -> Result<(Outcome, BTreeMap<Outcome, RuleMap>, TargetArch), Error> {
    let arch = target_arch()?;
    let native = Arch::native().ok_or(Error::UnsupportedArch)?;
    if let Some(path) = &filter.listener_path {
        return Err(Error::Unsupported(format!(
            "listenerPath {path:?} (seccomp notify)"
        )));
    }
    if filter.listener_metadata.is_some() {
        return Err(Error::Unsupported("listenerMetadata".to_string()));
    }
    if let Some(flag) = filter.flags.first() {
        return Err(Error::Unsupported(format!("filter flag {flag}")));
    }
    if !filter.architectures.is_empty() && !filter.architectures.contains(&native) {
        return Err(Error::Invalid(format!(
            "architectures does not list this machine's {}",
            native.spec_name()
        )));
    }
    if let Some(a) = filter
        .architectures
        .iter()
        .find(|a| secondary_arches().contains(a))
    {
        return Err(Error::Unsupported(format!(
            "architecture {} (omac refuses 32-bit and x32 syscall entry points)",
            a.spec_name()
        )));
    }

    let default = Outcome::of(filter.default_action, filter.default_errno_ret)?;
    // Rules grouped by the outcome they lead to.
    let mut by_outcome: BTreeMap<Outcome, RuleMap> = BTreeMap::new();
    for s in &filter.syscalls {
        let outcome = Outcome::of(s.action, s.errno_ret)?;
        if outcome == default {
            continue;
        }
        let rule = if s.args.is_empty() {
            None
        } else {
            let conds = s
                .args
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            Some(SeccompRule::new(conds).map_err(|e| Error::Invalid(e.to_string()))?)
        };
        let map = by_outcome.entry(outcome).or_default();
        for name in &s.names {
            let nr = syscalls::number(name).ok_or_else(|| Error::UnknownSyscall(name.clone()))?;
            add(map, nr, rule.clone());
        }
    }
    Ok((default, by_outcome, arch))
}

/// The stack of programs, in installation order, each with the action it answers besides
/// "allow": the base program when `default` is not "allow", one per other outcome, and
/// the prologue.
fn stack(
    default: Outcome,
    mut by_outcome: BTreeMap<Outcome, RuleMap>,
    arch: TargetArch,
) -> Result<Vec<(BpfProgram, u32)>, Error> {
    let mut stack: Vec<(BpfProgram, u32)> = Vec::new();
    if default != Outcome::Allow {
        // The base program: the default outcome for anything not explicitly allowed.
        let allowed = by_outcome.remove(&Outcome::Allow).unwrap_or_default();
        let program = build(allowed, default.action(), SeccompAction::Allow, arch)?;
        stack.push((program, default.action().into()));
    } else {
        by_outcome.remove(&Outcome::Allow);
    }
    for (outcome, rules) in by_outcome {
        let program = build(rules, SeccompAction::Allow, outcome.action(), arch)?;
        stack.push((program, outcome.action().into()));
    }
    stack.push((prologue(), libc::SECCOMP_RET_KILL_PROCESS));
    Ok(stack)
}

fn build(
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, Error> {
    let numbers: Vec<u32> = rules
        .keys()
        .filter_map(|n| u32::try_from(*n).ok())
        .collect();
    let program = chain(rules, mismatch.clone(), matched, arch)?;
    Ok(crate::entry::with_entry(
        program,
        &numbers,
        u32::from(mismatch),
        native_audit_arch(),
    ))
}

/// seccompiler's program: each rule's number in turn.
fn chain(
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, Error> {
    let f = SeccompFilter::new(rules, mismatch, matched, arch)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| Error::Invalid(e.to_string()))
}

/// The AUDIT_ARCH value of this machine's syscalls.
fn native_audit_arch() -> u32 {
    if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else {
        AUDIT_ARCH_AARCH64
    }
}

pub(crate) const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(crate) const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
pub(crate) const BPF_JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(crate) const SECCOMP_DATA_NR: u32 = 0;
pub(crate) const SECCOMP_DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One classic BPF instruction.
pub(crate) fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// omac's own first check: a syscall from another entry point (i386 `int 0x80`, x32, or
/// arm32 compat) kills the process, whatever the rest of the filter says.
fn prologue() -> BpfProgram {
    let native = native_audit_arch();
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    let allow = libc::SECCOMP_RET_ALLOW;
    if cfg!(target_arch = "x86_64") {
        vec![
            insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
            insn(BPF_JEQ_K, 0, 3, native),
            insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
            insn(BPF_JGE_K, 1, 0, X32_SYSCALL_BIT),
            insn(BPF_RET_K, 0, 0, allow),
            insn(BPF_RET_K, 0, 0, kill),
        ]
    } else {
        vec![
            insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
            insn(BPF_JEQ_K, 0, 1, native),
            insn(BPF_RET_K, 0, 0, allow),
            insn(BPF_RET_K, 0, 0, kill),
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oci::Syscall;
    use crate::policy::{agent_policy, Edits};

    /// Runs one classic BPF program on a `seccomp_data` of (nr, arch).
    fn eval(prog: &[sock_filter], nr: u32, arch: u32) -> u32 {
        run(prog, nr, arch, 0).0
    }

    /// [`eval`] with every argument `arg`; also the number of instructions run.
    pub(crate) fn run(prog: &[sock_filter], nr: u32, arch: u32, arg: u32) -> (u32, usize) {
        let (mut a, mut pc, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            steps += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    a = match i.k {
                        SECCOMP_DATA_NR => nr,
                        SECCOMP_DATA_ARCH => arch,
                        _ => arg, // instruction pointer and arguments
                    }
                }
                BPF_RET_K => return (i.k, steps),
                BPF_JA => pc += i.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let t = match i.code {
                        0x15 => a == i.k,
                        0x25 => a > i.k,
                        0x35 => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                0x54 => a &= i.k,                      // ALU AND K
                0x00 | 0x61 | 0x02 | 0x07 | 0x87 => {} // scratch memory: irrelevant here
                c => panic!("opcode {c:#x} not modelled"),
            }
        }
    }

    /// The kernel's verdict over every installed program: the most restrictive wins.
    fn verdict(c: &CompiledFilter, nr: u32, arch: u32) -> u32 {
        c.programs()
            .iter()
            .map(|p| eval(p, nr, arch) & libc::SECCOMP_RET_ACTION_FULL)
            .min_by_key(|action| match *action {
                libc::SECCOMP_RET_KILL_PROCESS => 0,
                libc::SECCOMP_RET_KILL_THREAD => 1,
                libc::SECCOMP_RET_TRAP => 2,
                libc::SECCOMP_RET_ERRNO => 3,
                _ => 4,
            })
            .unwrap()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn foreign_entry_points_meet_the_kill_action() {
        let c = compile(&agent_policy(&Edits::default()).unwrap()).unwrap();
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        // i386 getpid and an i386 number that is harmless on x86_64.
        assert_eq!(verdict(&c, 20, 0x4000_0003), kill);
        assert_eq!(verdict(&c, 39, 0x4000_0003), kill);
        // x32 getpid, and an unknown architecture.
        assert_eq!(verdict(&c, 0x4000_0000 | 39, AUDIT_ARCH_X86_64), kill);
        assert_eq!(verdict(&c, 39, 0x1234), kill);
        // The native getpid passes: the kill above is about the entry point.
        assert_eq!(verdict(&c, 39, AUDIT_ARCH_X86_64), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn default_policy_compiles_to_one_program() {
        let c = compile(&agent_policy(&Edits::default()).unwrap()).unwrap();
        assert_eq!(c.programs().len(), 1);
        assert!(c.instruction_count() < 4096);
    }

    /// The compact program that `compile` now gives the default policy answers every
    /// architecture, number and argument as the stack of seccompiler's programs it
    /// replaces (the kernel's view of that stack), which the tests here check the merged
    /// program against.
    #[test]
    fn the_compact_program_answers_as_the_stack_it_replaces() {
        let filter = agent_policy(&Edits::default()).unwrap();
        let stack = stack_of(&filter).unwrap();
        let compact = compile(&filter).unwrap();
        assert_eq!(compact.programs().len(), 1);
        let prog = &compact.programs()[0];
        assert!(prog.len() * 2 < crate::merge::merge(&stack).unwrap().len());
        let mut numbers: Vec<u32> = (0..600).collect();
        numbers.extend([X32_SYSCALL_BIT | 39, u32::MAX]);
        let mut refused = 0;
        for a in [native_audit_arch(), 0x4000_0003, 0x1234] {
            for &nr in &numbers {
                for arg in [0u32, 2, 0x10, 0x5401, 0x20000, 0x1000_0000, u32::MAX] {
                    let want = stack_verdict(&stack, nr, a, arg);
                    assert_eq!(
                        run(prog, nr, a, arg).0,
                        want,
                        "arch {a:#x} nr {nr} arg {arg:#x}"
                    );
                    refused += usize::from(want != libc::SECCOMP_RET_ALLOW);
                }
            }
        }
        assert!(refused > 0, "the comparison saw refusals");
    }

    /// The kernel's answer for a stack of programs (installation order): the most
    /// restrictive, and of two alike the one installed last.
    fn stack_verdict(stack: &[(BpfProgram, u32)], nr: u32, arch: u32, arg: u32) -> u32 {
        let mut answer = libc::SECCOMP_RET_ALLOW;
        for (p, _) in stack.iter().rev() {
            let r = run(p, nr, arch, arg).0;
            if crate::merge::rank(r) < crate::merge::rank(answer) {
                answer = r;
            }
        }
        answer
    }

    /// A rule of `action` for `names` (also for `compact`'s tests).
    pub(crate) fn rule(
        names: &[&str],
        action: Action,
        errno: Option<u32>,
        args: Vec<crate::oci::Arg>,
    ) -> Syscall {
        Syscall {
            names: names.iter().map(|n| n.to_string()).collect(),
            action,
            errno_ret: errno,
            args,
        }
    }

    fn masked(index: u32, bits: u64) -> crate::oci::Arg {
        crate::oci::Arg {
            index,
            value: bits,
            value_two: Some(bits),
            op: Op::MaskedEqual,
        }
    }

    /// The merged program answers every (architecture, number, argument) as the kernel
    /// answers for the stack: the default policy, a denylist mixing every action (two
    /// errnos on one syscall among them), and an allowlist.
    #[test]
    fn one_program_answers_as_the_stack_would() {
        let mut mixed = one(Action::Errno);
        mixed.syscalls = vec![
            rule(&["uname"], Action::Errno, Some(13), vec![]),
            rule(&["uname"], Action::Errno, Some(22), vec![masked(0, 2)]),
            rule(&["getpid", "mkdir"], Action::KillThread, None, vec![]),
            rule(&["mkdir"], Action::Trap, None, vec![]),
            rule(&["getppid"], Action::Trap, None, vec![masked(1, 0x20000)]),
            rule(&["getuid"], Action::Log, None, vec![]),
            rule(
                &["socket"],
                Action::KillProcess,
                None,
                vec![masked(0, 0x10)],
            ),
            rule(&["socket"], Action::Errno, Some(97), vec![]),
        ];
        let mut allow = one(Action::Allow);
        allow.default_action = Action::Errno;
        allow.syscalls = vec![
            rule(
                &["read", "write", "exit_group", "uname"],
                Action::Allow,
                None,
                vec![],
            ),
            rule(&["ioctl"], Action::Allow, None, vec![masked(1, 0x5401)]),
            rule(&["uname"], Action::Trap, None, vec![masked(0, 2)]),
            rule(&["kill"], Action::KillProcess, None, vec![]),
        ];
        let mut numbers: Vec<u32> = (0..600).collect();
        numbers.extend([X32_SYSCALL_BIT | 39, u32::MAX]);
        for filter in [agent_policy(&Edits::default()).unwrap(), mixed, allow] {
            let stack = stack_of(&filter).unwrap();
            let merged = crate::merge::merge(&stack).expect("merged");
            let mut refused = 0;
            for a in [native_audit_arch(), 0x4000_0003, 0x1234] {
                for &nr in &numbers {
                    for arg in [0u32, 2, 0x10, 0x5401, 0x20000, u32::MAX] {
                        let want = stack_verdict(&stack, nr, a, arg);
                        assert_eq!(
                            run(&merged, nr, a, arg).0,
                            want,
                            "arch {a:#x} nr {nr} arg {arg:#x}"
                        );
                        refused += usize::from(want != libc::SECCOMP_RET_ALLOW);
                    }
                }
            }
            // The comparison saw refusals and passes alike.
            assert!(refused > 0 && refused < numbers.len() * 18, "{refused}");
        }
    }

    /// A rule map: `plain` numbers match whatever the arguments, `masked` ones when the
    /// first argument has the given bits.
    fn rules_of(plain: &[i64], masked: &[(i64, u64)]) -> RuleMap {
        let mut m = RuleMap::new();
        for n in plain {
            add(&mut m, *n, None);
        }
        for (n, bits) in masked {
            let c = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*bits),
                *bits,
            )
            .unwrap();
            add(&mut m, *n, Some(SeccompRule::new(vec![c]).unwrap()));
        }
        m
    }

    /// Every architecture, number (native, x32, beyond any table) and argument gets the same
    /// answer with the entry in front as from seccompiler's program alone; a native number
    /// without rules gets it after a handful of instructions.
    #[test]
    fn the_entry_changes_no_answer_and_shortens_the_walk() {
        let arch = native_audit_arch();
        let plain: Vec<i64> = [0, 1, 2, 59, 100, 101, 102, 103, 250, 449].into();
        let masked = [(41, 0x2), (56, 0x1_0000_0000), (101, 0x20000)];
        let actions = [
            (SeccompAction::Allow, SeccompAction::Errno(1)),
            (SeccompAction::Errno(13), SeccompAction::Allow),
            (SeccompAction::KillProcess, SeccompAction::Allow),
        ];
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend([
            X32_SYSCALL_BIT | 1,
            X32_SYSCALL_BIT | 59,
            u32::MAX - 1,
            u32::MAX,
        ]);
        for (mismatch, matched) in actions {
            let rules = rules_of(&plain, &masked);
            let keys: Vec<u32> = rules.keys().map(|n| *n as u32).collect();
            let target = target_arch().unwrap();
            let alone = chain(rules.clone(), mismatch.clone(), matched.clone(), target).unwrap();
            let entered = build(rules, mismatch.clone(), matched, target).unwrap();
            assert!(entered.len() > alone.len(), "the entry was added");
            for a in [arch, 0x4000_0003, 0x1234] {
                for &nr in &numbers {
                    for arg in [0u32, 2, 0x20000, u32::MAX] {
                        let (want, walked) = run(&alone, nr, a, arg);
                        let (got, steps) = run(&entered, nr, a, arg);
                        assert_eq!(got, want, "arch {a:#x} nr {nr:#x} arg {arg:#x}");
                        if a == arch && !keys.contains(&nr) {
                            assert_eq!(got, u32::from(mismatch.clone()));
                            assert!(
                                steps <= 12,
                                "nr {nr}: {steps} instructions (alone {walked})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Each of the default policy's programs answers a number it has no rule for at once.
    #[test]
    fn the_default_policy_is_searched_not_walked() {
        let stack = stack_of(&agent_policy(&Edits::default()).unwrap()).unwrap();
        let getpid = syscalls::number("getpid").unwrap() as u32;
        for (p, _) in &stack {
            let (answer, steps) = run(p, getpid, native_audit_arch(), 0);
            assert_eq!(answer, libc::SECCOMP_RET_ALLOW);
            assert!(
                steps <= 12,
                "{steps} of {} instructions for getpid",
                p.len()
            );
        }
        // The first program's chain alone would have compared getpid with each number.
        assert!(stack[0].0.len() > 60, "{} instructions", stack[0].0.len());
    }

    /// With too many numbers for classic BPF's short jumps the program stays as it was.
    #[test]
    fn too_many_numbers_for_short_jumps_leave_the_program_alone() {
        let plain: Vec<i64> = (0..600).step_by(2).collect();
        let rules = rules_of(&plain, &[]);
        let target = target_arch().unwrap();
        let alone = chain(
            rules.clone(),
            SeccompAction::Allow,
            SeccompAction::Errno(1),
            target,
        )
        .unwrap();
        let built = build(rules, SeccompAction::Allow, SeccompAction::Errno(1), target).unwrap();
        assert_eq!(built.len(), alone.len());
    }

    fn one(action: Action) -> LinuxSeccomp {
        LinuxSeccomp::allowing_all_but(vec![Syscall {
            names: vec!["uname".into()],
            action,
            errno_ret: None,
            args: vec![],
        }])
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        let e = compile(&one(Action::Notify)).unwrap_err().to_string();
        assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
        let mut f = one(Action::Errno);
        f.flags = vec!["SECCOMP_FILTER_FLAG_LOG".into()];
        assert!(compile(&f)
            .unwrap_err()
            .to_string()
            .contains("SECCOMP_FILTER_FLAG_LOG"));
        let mut f = one(Action::Errno);
        f.listener_path = Some("/run/x.sock".into());
        assert!(compile(&f)
            .unwrap_err()
            .to_string()
            .contains("listenerPath"));
        let mut f = one(Action::Errno);
        f.architectures = vec![Arch::native().unwrap(), secondary_arches()[0]];
        assert!(compile(&f).unwrap_err().to_string().contains("32-bit"));
        let mut f = one(Action::Errno);
        f.syscalls[0].names = vec!["frobnicate".into()];
        assert!(compile(&f).unwrap_err().to_string().contains("frobnicate"));
    }

    #[test]
    fn allowlist_filters_get_a_base_program() {
        let mut f = one(Action::Allow);
        f.default_action = Action::Errno;
        assert_eq!(stack_of(&f).unwrap().len(), 2);
        let c = compile(&f).unwrap();
        let uname = syscalls::number("uname").unwrap() as u32;
        let getpid = syscalls::number("getpid").unwrap() as u32;
        assert_eq!(
            verdict(&c, uname, native_audit_arch()),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            verdict(&c, getpid, native_audit_arch()),
            libc::SECCOMP_RET_ERRNO
        );
    }
}
