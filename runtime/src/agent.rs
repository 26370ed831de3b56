//! The agent's last steps before exec, in a child of init (see [`spawn`]): process group,
//! identity, working directory, rlimits, a fresh session keyring, Landlock, no
//! capabilities, no_new_privs, no inherited descriptors, the seccomp filter, exec.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use omac_bundle::ext::NetRules;

use crate::landlock;
use crate::report::{LayerStatus, Level};
use crate::stage::Ctx;
use crate::sys;
use crate::wire::{decode_bpf, Msg, RunPlan};

/// Fails the run from the agent's side: reports and exits 127 (nothing was executed).
fn die(ctx: &Ctx, step: &str, message: impl Into<String>, fix: impl Into<String>) -> ! {
    ctx.rep.fail(step, message, fix);
    // SAFETY: leaving the forked child without running destructors.
    unsafe { libc::_exit(127) }
}

/// Starts the agent (init calls this): a child that runs [`exec`] and returns its pid.
///
/// The child shares init's memory until its exec (`CLONE_VM | CLONE_VFORK`, on a stack of
/// its own) while init waits. A fork would copy init's page tables, make the child copy
/// every page it writes, and tear that copy of the address space down again at the exec:
/// all on the path every start waits for (0.17 ms of a run here, side by side). Sharing
/// is sound because init is single-threaded and stopped until the child has exec'd or
/// exited, and [`exec`] only borrows what init owns: what it allocates stays allocated in
/// init's heap (a few KiB, once), and whatever it held of its reports goes out when init
/// resumes. When no stack can be mapped, a fork.
pub fn spawn(plan: &RunPlan, ctx: &Ctx) -> io::Result<libc::pid_t> {
    struct Arg<'a> {
        plan: &'a RunPlan,
        ctx: &'a Ctx,
    }
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points at the `Arg` below, which lives until init resumes, and
        // init does not run before then.
        let a = unsafe { &*(arg as *const Arg) };
        exec(a.plan, a.ctx)
    }
    let Some(stack) = ChildStack::map() else {
        // SAFETY: init is single-threaded; the child execs at once (`exec`).
        return match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => exec(plan, ctx),
            pid => Ok(pid),
        };
    };
    let arg = Arg { plan, ctx };
    // SAFETY: a mapped stack (its top; a guard page below it) and an argument that outlive
    // the child's use of them, since CLONE_VFORK stops init until the child execs or exits.
    let pid = unsafe {
        libc::clone(
            child,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &arg as *const Arg as *mut libc::c_void,
        )
    };
    let r = sys::cvt(pid).map(|_| pid);
    // Whatever the child held of its reports when it stopped short of its exec.
    ctx.rep.release();
    r
}

/// A stack for the agent's child until its exec, with a guard page below it: an overflow
/// faults instead of writing into init's memory.
struct ChildStack {
    base: *mut libc::c_void,
}

impl ChildStack {
    const GUARD: usize = 4096;
    const SIZE: usize = 512 << 10;

    fn map() -> Option<ChildStack> {
        // SAFETY: a fresh anonymous mapping, inaccessible until its upper part is opened.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::GUARD + Self::SIZE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let stack = ChildStack { base };
        // SAFETY: the part above the guard page, inside the mapping just made.
        let opened = unsafe {
            libc::mprotect(
                stack.base.cast::<u8>().add(Self::GUARD).cast(),
                Self::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        (opened == 0).then_some(stack)
    }

    fn top(&self) -> *mut libc::c_void {
        // SAFETY: the end of the mapping (the stack grows down from it).
        unsafe { self.base.cast::<u8>().add(Self::GUARD + Self::SIZE).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer used (the child has exec'd or exited).
        unsafe { libc::munmap(self.base, Self::GUARD + Self::SIZE) };
    }
}

/// Becomes the agent: never returns.
pub fn exec(plan: &RunPlan, ctx: &Ctx) -> ! {
    sys::name_thread(c"omac-agent");
    // What the agent reports before its exec goes out in one write (see `Reporter::hold`).
    ctx.rep.hold();
    // The CPUs omac had, not the one its sandbox was built on.
    crate::cpus::restore_self();
    // init reset every disposition; the agent only has to unblock what init supervises.
    let _ = sys::set_signal_mask(&sys::sigset(&[]));
    if !ctx.attached {
        // Its own group, so that init's forwarded signals reach the agent's children too.
        // SAFETY: setpgid on ourselves.
        unsafe { libc::setpgid(0, 0) };
    }
    if !ctx.pidns {
        // Without a pid namespace nothing else kills the agent when init dies.
        let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0);
    }
    let p = &plan.process;
    // SAFETY: identity calls with plain integers.
    unsafe {
        if plan.allow_setgroups {
            let gids: Vec<libc::gid_t> = p.additional_gids.clone();
            if libc::setgroups(gids.len(), gids.as_ptr()) < 0 {
                let e = io::Error::last_os_error();
                die(
                    ctx,
                    "setgroups",
                    sys::errno_text(&e),
                    "remove additionalGids",
                );
            }
        }
        if libc::getegid() != p.gid && libc::setresgid(p.gid, p.gid, p.gid) < 0 {
            let e = io::Error::last_os_error();
            die(ctx, "setgid", sys::errno_text(&e), "run as the mapped gid");
        }
        if libc::geteuid() != p.uid && libc::setresuid(p.uid, p.uid, p.uid) < 0 {
            let e = io::Error::last_os_error();
            die(ctx, "setuid", sys::errno_text(&e), "run as the mapped uid");
        }
        if let Some(m) = p.umask {
            libc::umask(m as libc::mode_t);
        }
    }
    let mut env = p.env.clone();
    if let Some(tmp) = &ctx.private_tmp {
        env.retain(|kv| !kv.starts_with("TMPDIR="));
        env.push(format!("TMPDIR={}", tmp.display()));
    }
    for (from, to) in &ctx.moved_ports {
        for kv in env.iter_mut() {
            for host in ["127.0.0.1", "localhost"] {
                *kv = kv.replace(&format!("{host}:{from}"), &format!("{host}:{to}"));
            }
        }
    }
    if let Err(e) = std::env::set_current_dir(&p.cwd) {
        die(
            ctx,
            "working directory",
            format!("{}: {e}", p.cwd),
            "grant the working directory or change process.cwd",
        );
    }
    set_rlimits(plan, ctx);
    // process.oomScoreAdj: inherited from init, which set it (see `init::main`).
    // The host's session keyring (and whatever keys it links) stays behind.
    if let Err(e) = sys::join_new_session_keyring() {
        ctx.rep
            .warn(format!("could not join a new session keyring: {e}"));
    }
    ctx.rep
        .debug(|| "agent: identity, cwd, rlimits, keyring done".to_string());
    apply_landlock(plan, ctx);
    ctx.rep.debug(|| "agent: Landlock applied".to_string());
    if let Err(e) = crate::caps::drop_all() {
        die(
            ctx,
            "drop capabilities",
            sys::errno_text(&e),
            "run `omac doctor`",
        );
    }
    if let Err(e) = sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0) {
        die(
            ctx,
            "no_new_privs",
            sys::errno_text(&e),
            "run `omac doctor`",
        );
    }
    // Every descriptor but 0, 1 and 2 closes at exec (the report pipe stays until then).
    if let Err(e) = sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) {
        die(
            ctx,
            "close descriptors",
            sys::errno_text(&e),
            "omac needs Linux 5.11 or newer",
        );
    }
    let argv: Vec<CString> = match p.args.iter().map(|a| sys::cstr(a)).collect() {
        Ok(v) => v,
        Err(e) => die(
            ctx,
            "argv",
            e.to_string(),
            "remove NUL bytes from the arguments",
        ),
    };
    let envp: Vec<CString> = env.iter().filter_map(|e| sys::cstr(e).ok()).collect();
    let program = match find_program(&p.args[0], &env) {
        Some(p) => p,
        None => die(
            ctx,
            "exec",
            format!("{}: command not found inside the sandbox", p.args[0]),
            "use an absolute path, or make sure PATH inside the sandbox lists its directory",
        ),
    };
    let program_c = match sys::cpath(&program) {
        Ok(c) => c,
        Err(e) => die(ctx, "exec", e.to_string(), "use a plain path"),
    };
    install_seccomp(plan, ctx);
    ctx.rep.debug(|| format!("exec {}", program.display()));
    ctx.rep.release();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(program_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = io::Error::last_os_error();
    die(
        ctx,
        "exec",
        format!("{}: {}", program.display(), sys::errno_text(&e)),
        "check that the program exists inside the sandbox and is executable there",
    )
}

/// `args[0]` as a path: itself when it has a `/`, else the first match on the agent's PATH.
fn find_program(arg0: &str, env: &[String]) -> Option<PathBuf> {
    if arg0.contains('/') {
        return Some(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(arg0))
        .find(|p| {
            sys::cpath(p).is_ok_and(|c| {
                // SAFETY: valid C string.
                unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
            })
        })
}

fn set_rlimits(plan: &RunPlan, ctx: &Ctx) {
    for (res, name, soft, hard) in &plan.process.rlimits {
        // SAFETY: plain data.
        let mut cur: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer.
        unsafe { libc::getrlimit(*res as _, &mut cur) };
        let mut hard = *hard;
        let mut soft = *soft;
        // Raising a hard limit needs CAP_SYS_RESOURCE in the host's user namespace.
        if hard > cur.rlim_max {
            ctx.rep.warn(format!(
                "{name}: the hard limit {hard} is above what this process may set; using {}",
                cur.rlim_max
            ));
            hard = cur.rlim_max;
            soft = soft.min(hard);
        }
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: valid pointer.
        if unsafe { libc::setrlimit(*res as _, &new) } < 0 {
            let e = io::Error::last_os_error();
            die(
                ctx,
                &format!("rlimit {name}"),
                sys::errno_text(&e),
                "lower the limit in process.rlimits",
            );
        }
    }
}

fn apply_landlock(plan: &RunPlan, ctx: &Ctx) {
    let require = |l: &str| plan.require.iter().any(|r| r == l);
    let req = match (&plan.landlock, &ctx.private_tmp) {
        (None, _) => {
            let none = || LayerStatus::none("a plain OCI bundle has no Landlock rules");
            ctx.rep.send(&Msg::Abi {
                abi: landlock::abi(),
            });
            ctx.rep.layer("landlock-fs", none());
            ctx.rep.layer("landlock-net", none());
            ctx.rep.layer("landlock-scopes", none());
            return;
        }
        (Some(l), None) => landlock::Request {
            fs: l.fs.clone(),
            net: l.net.clone(),
            scopes: l.scopes.clone(),
            min_abi: l.min_abi,
            fs_required: l.required || require("landlock-fs"),
            net_required: require("landlock-net"),
        },
        (Some(l), Some(tmp)) => {
            let mut fs = plan.fallback.rules.clone();
            fs.push(omac_bundle::ext::FsRule {
                path: tmp.display().to_string(),
                access: omac_bundle::rights::set(&[
                    omac_bundle::rights::READ,
                    omac_bundle::rights::WRITE,
                ]),
            });
            let net = match plan.network_mode.as_deref() {
                // Only the bridges' ports, on the host's loopback.
                Some("filtered") => NetRules {
                    bind_tcp: Some(vec![]),
                    connect_tcp: Some(
                        plan.bridges
                            .iter()
                            .filter_map(|b| b.listen.parse::<std::net::SocketAddr>().ok())
                            .map(|a| {
                                ctx.moved_ports
                                    .iter()
                                    .find(|(from, _)| *from == a.port())
                                    .map_or(a.port(), |(_, to)| *to)
                            })
                            .collect(),
                    ),
                },
                Some("blocked") => NetRules {
                    bind_tcp: Some(vec![]),
                    connect_tcp: Some(vec![]),
                },
                _ => l.net.clone(),
            };
            let net_required =
                require("landlock-net") || plan.network_mode.as_deref() == Some("filtered");
            landlock::Request {
                fs,
                net,
                scopes: l.scopes.clone(),
                min_abi: l.min_abi,
                fs_required: true,
                net_required,
            }
        }
    };
    match landlock::apply(&req) {
        Ok(a) => {
            ctx.rep.send(&Msg::Abi { abi: a.abi });
            if !a.skipped.is_empty() {
                ctx.rep.debug(|| {
                    format!(
                        "Landlock rules skipped (path absent): {}",
                        a.skipped.join(", ")
                    )
                });
            }
            if a.fs.level != Level::Full {
                ctx.rep.warn(format!(
                    "Landlock filesystem rules only partly enforced: {}",
                    a.fs.detail
                ));
            }
            ctx.rep.layer("landlock-fs", a.fs);
            ctx.rep.layer("landlock-net", a.net);
            ctx.rep.layer("landlock-scopes", a.scopes);
        }
        Err(r) => {
            ctx.rep
                .fail(&format!("require {}", r.layer), r.message, r.fix);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(127) }
        }
    }
}

/// Installs the compiled filter (and in the fallback, the socket rules) last before exec.
fn install_seccomp(plan: &RunPlan, ctx: &Ctx) {
    let mut programs = match decode_bpf(&plan.seccomp) {
        Ok(p) => p,
        Err(e) => die(ctx, "seccomp", e, "report this as a bug"),
    };
    if ctx.private_tmp.is_some() {
        if let Some(extra) = crate::fallback::network_filter(plan.network_mode.as_deref()) {
            match omac_seccomp::compile(&extra) {
                Ok(c) => programs.extend(c.programs().iter().map(|p| {
                    p.iter()
                        .map(|i| crate::wire::seccomp_insn::Insn {
                            code: i.code,
                            jt: i.jt,
                            jf: i.jf,
                            k: i.k,
                        })
                        .collect()
                })),
                Err(e) => die(ctx, "seccomp", e.to_string(), "report this as a bug"),
            }
        }
    }
    if programs.is_empty() {
        ctx.rep
            .layer("seccomp", LayerStatus::none("the bundle has no filter"));
        return;
    }
    let count: usize = programs.iter().map(Vec::len).sum();
    // Report before the filter is in place: nothing after this point may fail silently.
    ctx.rep.layer(
        "seccomp",
        LayerStatus::new(
            Level::Full,
            match programs.len() {
                1 => format!("1 program, {count} instructions"),
                n => format!("{n} programs, {count} instructions"),
            },
        ),
    );
    for p in &programs {
        let prog = libc::sock_fprog {
            len: p.len() as libc::c_ushort,
            filter: p.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: a valid program; no_new_privs is set.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            die(ctx, "seccomp", sys::errno_text(&e), "run `omac doctor`");
        }
    }
}
