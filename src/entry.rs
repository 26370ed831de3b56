//! omac's entry point, ahead of glibc's `_start`: for `omac run ...` it forks the holder,
//! which makes the sandbox's namespaces while omac starts (see `omac_runtime::holder`).
//!
//! For every command, it first asks for the binary's code in 2 MB pages, and after the
//! holder's fork has the kernel make the private pages of the binary's writable segments in
//! one call each (see `omac_advise_segments` below).
//!
//! This code runs before the binary has relocated itself and before glibc has set up the
//! thread pointer: nothing here may call a library function (errno lives in thread-local
//! storage, and calls to other crates go through the not yet relocated GOT, as unoptimized
//! builds show at once), touch a static that holds an address, or let the compiler insert
//! a `memset`. So it is written in assembly: system calls on the stack's own data, the
//! result left in [`HOLDER`] for the runtime once it runs (see [`offer_holder`]). The
//! holder itself never leaves that state: it makes its namespaces, says so, waits for its
//! release and exits.

/// The holder as the entry point left it: pid (0: none), the read end of its `ready` pipe,
/// the write end of its `release` pipe. Written by the entry point only.
static mut HOLDER: [i32; 3] = [0; 3];

/// The holder forked at the entry point, if any: hands it to the runtime (once).
#[cfg_attr(test, allow(dead_code))]
pub fn offer_holder() {
    // SAFETY: written only before `main`, on this thread; read and cleared here.
    let [pid, ready, release] = unsafe { std::ptr::replace(&raw mut HOLDER, [0; 3]) };
    if pid > 0 {
        // SAFETY: the entry point opened both for this process and nothing else owns them.
        unsafe { omac_runtime::holder::offer(pid, ready, release) };
    }
}

/// The advice for the code segment: MADV_HUGEPAGE, or MADV_NORMAL (nothing) in the build
/// that scripts/link-order.sh profiles, which must see every page of code fault on its own.
const CODE_ADVICE: i32 = if cfg!(omac_code_in_small_pages) {
    libc::MADV_NORMAL
} else {
    libc::MADV_HUGEPAGE
};

std::arch::global_asm!(
    // In a section of its own, which the link places after all other code: the kernel
    // reads the code around the entry point in small pages when it starts the binary, and
    // that must not be the first 2 MB of the code (see omac_advise_segments).
    ".pushsection .omac_entry,\"ax\",@progbits",
    ".p2align 4",
    // omac_entry: the ELF entry point. Advises the code segment, calls omac_holder_start
    // with the kernel's initial stack (argc, argv..., 0, envp..., 0, auxv), advises the
    // writable segments, then goes on to glibc's _start with the stack and rdx as the
    // kernel left them.
    ".globl omac_entry",
    ".type omac_entry,@function",
    "omac_entry:",
    "push rdx",
    "push rdx",
    "mov edi, 1",
    "mov esi, {code_advice}",
    "call 60f",
    "lea rdi, [rsp + 16]",
    "call 80f",
    "mov edi, 2",
    "mov esi, 23",
    "call 60f",
    "pop rdx",
    "pop rdx",
    "jmp _start",
    // omac_advise_segments(flag, advice): madvise(advice) over each PT_LOAD segment whose
    // p_flags has `flag`. Called twice:
    // - PF_X, MADV_HUGEPAGE, first of all: the code is read into the page cache in 2 MB
    //   folios from then on, which every later process maps with one page-table entry per
    //   2 MB (the link aligns the code segment to 2 MB: see .cargo/config.toml). A run's
    //   processes then take a few faults for their code instead of hundreds and unmap a few
    //   entries when they exit. Only code read after this call comes in so: this entry point
    //   lies outside the first 2 MB of the code, where the link order puts what a run
    //   executes. Without transparent huge pages (`never`) the advice is refused, and
    //   nothing changes.
    // - PF_W, MADV_POPULATE_WRITE, after the holder's fork (so the holder copies none of
    //   them): the first writable segment holds .data.rel.ro and the GOT (~350 KB), which
    //   glibc's start then writes the binary's relative relocations into; the second .data
    //   and .bss. The kernel makes their private pages in one call each instead of one page
    //   fault per page written (~100 faults of an `omac run`'s main process). A kernel older
    //   than 5.14 refuses the advice (EINVAL), and the pages fault as before.
    // The program headers are found from the ELF header, which the linker's `__ehdr_start`
    // marks (addressed relative to rip: no relocation needed); a segment's runtime address
    // is its p_vaddr past it (a PIE's first segment starts at 0).
    "60:",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov r14d, edi",
    "mov r15d, esi",
    "lea rbx, [rip + __ehdr_start]",
    "mov r12, qword ptr [rbx + 32]",
    "add r12, rbx",
    "movzx r13d, word ptr [rbx + 56]",
    "61:",
    "test r13, r13",
    "jz 63f",
    // p_type PT_LOAD (1) with the flag in p_flags.
    "cmp dword ptr [r12], 1",
    "jne 62f",
    "test dword ptr [r12 + 4], r14d",
    "jz 62f",
    "mov rsi, qword ptr [r12 + 40]",
    "mov rdi, qword ptr [r12 + 16]",
    "add rdi, rbx",
    "mov rdx, rdi",
    "and rdi, -4096",
    "sub rdx, rdi",
    "add rsi, rdx",
    "mov edx, r15d",
    "mov eax, 28",
    "syscall",
    // With the code's advice, its first 2 MB are read in at once, before the holder's fork:
    // a fault of another process meanwhile would share the file's read-ahead state.
    "cmp r15d, {huge}",
    "jne 62f",
    "movzx eax, byte ptr [rdi]",
    "62:",
    "add r12, 56",
    "dec r13",
    "jmp 61b",
    "63:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "ret",
    // omac_holder_start(sp). Locals: [rsp] ready pipe (2 x i32), [rsp+8] release pipe,
    // [rsp+32] struct ifreq (40 bytes), [rsp+80] one byte, [rsp+88] cpu (u32),
    // [rsp+96] a CPU mask (128 bytes).
    "80:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 232",
    "mov rbx, rdi",
    // argv[1] must be "run".
    "mov rax, qword ptr [rbx]",
    "cmp rax, 2",
    "jb 90f",
    "mov rsi, qword ptr [rbx + 16]",
    "cmp byte ptr [rsi], 0x72",
    "jne 90f",
    "cmp byte ptr [rsi + 1], 0x75",
    "jne 90f",
    "cmp byte ptr [rsi + 2], 0x6e",
    "jne 90f",
    "cmp byte ptr [rsi + 3], 0",
    "jne 90f",
    // No holder when OMAC_STAGE_EXEC is set (the tests' switch for the re-executed stage).
    "lea r12, [rbx + rax * 8 + 16]",
    "lea r13, [rip + 70f]",
    "2:",
    "mov rsi, qword ptr [r12]",
    "test rsi, rsi",
    "jz 4f",
    "xor ecx, ecx",
    "3:",
    "mov al, byte ptr [r13 + rcx]",
    "test al, al",
    "jz 90f",
    "cmp al, byte ptr [rsi + rcx]",
    "jne 33f",
    "inc rcx",
    "jmp 3b",
    "33:",
    "add r12, 8",
    "jmp 2b",
    // A closed descriptor 0, 1 or 2 gets /dev/null, as Rust's start would later give it:
    // otherwise a pipe below would take its number and reach the agent.
    "4:",
    "xor r14d, r14d",
    "5:",
    "mov eax, 72",
    "mov rdi, r14",
    "mov esi, 1",
    "xor edx, edx",
    "syscall",
    "cmp rax, -9",
    "jne 6f",
    "mov eax, 2",
    "lea rdi, [rip + 71f]",
    "mov esi, 2",
    "xor edx, edx",
    "syscall",
    "cmp rax, r14",
    "jne 90f",
    "6:",
    "inc r14",
    "cmp r14, 3",
    "jb 5b",
    // The pipes, close-on-exec.
    "mov eax, 293",
    "lea rdi, [rsp]",
    "mov esi, 0x80000",
    "syscall",
    "test rax, rax",
    "jnz 90f",
    "mov eax, 293",
    "lea rdi, [rsp + 8]",
    "mov esi, 0x80000",
    "syscall",
    "test rax, rax",
    "jnz 88f",
    "mov eax, 39",
    "syscall",
    "mov r15, rax",
    "mov eax, 57",
    "syscall",
    "test rax, rax",
    "jz 20f",
    // omac: keeps the read end of ready and the write end of release.
    "mov rbp, rax",
    "mov eax, 3",
    "mov edi, dword ptr [rsp + 4]",
    "syscall",
    "mov eax, 3",
    "mov edi, dword ptr [rsp + 8]",
    "syscall",
    "test rbp, rbp",
    "js 87f",
    // The holder goes to the next allowed CPU after omac's: a new process otherwise often
    // waits on omac's CPU until omac's start is done (the stage goes there too).
    "mov eax, 204",
    "xor edi, edi",
    "mov esi, 128",
    "lea rdx, [rsp + 96]",
    "syscall",
    "test rax, rax",
    "jle 12f",
    "lea r13, [rax * 8]",
    "mov eax, 309",
    "lea rdi, [rsp + 88]",
    "xor esi, esi",
    "xor edx, edx",
    "syscall",
    "test rax, rax",
    "jnz 12f",
    "mov r14d, dword ptr [rsp + 88]",
    "cmp r14, r13",
    "jae 12f",
    "mov r12d, 1",
    "10:",
    "cmp r12, r13",
    "jae 12f",
    "lea rcx, [r14 + r12]",
    "cmp rcx, r13",
    "jb 11f",
    "sub rcx, r13",
    "11:",
    "bt qword ptr [rsp + 96], rcx",
    "jc 13f",
    "inc r12",
    "jmp 10b",
    "13:",
    "xor eax, eax",
    "14:",
    "mov qword ptr [rsp + 96 + rax * 8], 0",
    "inc eax",
    "cmp eax, 16",
    "jb 14b",
    "bts qword ptr [rsp + 96], rcx",
    "mov eax, 203",
    "mov rdi, rbp",
    "mov esi, 128",
    "lea rdx, [rsp + 96]",
    "syscall",
    "12:",
    "mov eax, dword ptr [rsp]",
    "mov dword ptr [rip + {holder} + 4], eax",
    "mov eax, dword ptr [rsp + 12]",
    "mov dword ptr [rip + {holder} + 8], eax",
    "mov dword ptr [rip + {holder}], ebp",
    "jmp 90f",
    // fork failed: close omac's ends too.
    "87:",
    "mov eax, 3",
    "mov edi, dword ptr [rsp + 12]",
    "syscall",
    "mov eax, 3",
    "mov edi, dword ptr [rsp]",
    "syscall",
    "jmp 90f",
    // The second pipe failed: close the first.
    "88:",
    "mov eax, 3",
    "mov edi, dword ptr [rsp]",
    "syscall",
    "mov eax, 3",
    "mov edi, dword ptr [rsp + 4]",
    "syscall",
    "90:",
    "add rsp, 232",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    // The holder. Keeps the write end of ready and the read end of release; dies with
    // omac (and exits at once if omac is gone already).
    "20:",
    "mov eax, 3",
    "mov edi, dword ptr [rsp]",
    "syscall",
    "mov eax, 3",
    "mov edi, dword ptr [rsp + 12]",
    "syscall",
    "mov eax, 157",
    "mov edi, 1",
    "mov esi, 9",
    "syscall",
    "mov eax, 110",
    "syscall",
    "cmp rax, r15",
    "jne 29f",
    "mov eax, 272",
    "mov edi, {namespaces}",
    "syscall",
    "test rax, rax",
    "jnz 29f",
    // lo up: socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC), SIOCGIFFLAGS, | IFF_UP,
    // SIOCSIFFLAGS.
    "mov eax, 41",
    "mov edi, 2",
    "mov esi, 0x80002",
    "xor edx, edx",
    "syscall",
    "test rax, rax",
    "js 29f",
    "mov r12, rax",
    "mov qword ptr [rsp + 32], 0",
    "mov qword ptr [rsp + 40], 0",
    "mov qword ptr [rsp + 48], 0",
    "mov qword ptr [rsp + 56], 0",
    "mov qword ptr [rsp + 64], 0",
    "mov word ptr [rsp + 32], 0x6f6c",
    "mov eax, 16",
    "mov rdi, r12",
    "mov esi, 0x8913",
    "lea rdx, [rsp + 32]",
    "syscall",
    "test rax, rax",
    "jnz 29f",
    "or word ptr [rsp + 48], 1",
    "mov eax, 16",
    "mov rdi, r12",
    "mov esi, 0x8914",
    "lea rdx, [rsp + 32]",
    "syscall",
    "test rax, rax",
    "jnz 29f",
    "mov eax, 3",
    "mov rdi, r12",
    "syscall",
    // Ready: one byte, then the end closed.
    "mov byte ptr [rsp + 80], 0x79",
    "mov eax, 1",
    "mov edi, dword ptr [rsp + 4]",
    "lea rsi, [rsp + 80]",
    "mov edx, 1",
    "syscall",
    "mov eax, 3",
    "mov edi, dword ptr [rsp + 4]",
    "syscall",
    // Until every copy of release's write end is closed (EINTR: again).
    "21:",
    "xor eax, eax",
    "mov edi, dword ptr [rsp + 8]",
    "lea rsi, [rsp + 80]",
    "mov edx, 1",
    "syscall",
    "cmp rax, -4",
    "je 21b",
    "mov eax, 231",
    "xor edi, edi",
    "syscall",
    "29:",
    "mov eax, 231",
    "mov edi, 1",
    "syscall",
    "ud2",
    ".popsection",
    ".pushsection .rodata.omac_entry,\"a\",@progbits",
    "70:",
    ".asciz \"OMAC_STAGE_EXEC=\"",
    "71:",
    ".asciz \"/dev/null\"",
    ".popsection",
    holder = sym HOLDER,
    code_advice = const CODE_ADVICE,
    huge = const libc::MADV_HUGEPAGE,
    namespaces = const omac_runtime::holder::NAMESPACES,
);
