//! The layout of the omac binary that its start relies on (see src/entry.rs and
//! .cargo/config.toml): the code segment on a 2 MB boundary of the file and of memory, so
//! that a 2 MB folio of it can be mapped with one page-table entry, and the entry point
//! past the code's first 2 MB, where the link order (link/omac.order) puts what a run
//! executes. The kernel reads the code around the entry point in small pages when it starts
//! the binary, before the entry point can ask for 2 MB ones.

#![cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]

const MB2: u64 = 2 << 20;

#[test]
fn the_code_starts_on_2_mb_and_the_entry_point_lies_past_its_first_2_mb() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_omac")).unwrap();
    assert_eq!(&bin[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let u16_at = |o: usize| u16::from_le_bytes(bin[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(bin[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bin[o..o + 8].try_into().unwrap());
    let (entry, phoff) = (u64_at(24), u64_at(32) as usize);
    let (phentsize, phnum) = (u16_at(54) as usize, u16_at(56) as usize);
    // PT_LOAD (1) segments with PF_X (1): offset, address, size in memory, alignment.
    let code: Vec<(u64, u64, u64, u64)> = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&p| u32_at(p) == 1 && u32_at(p + 4) & 1 != 0)
        .map(|p| {
            (
                u64_at(p + 8),
                u64_at(p + 16),
                u64_at(p + 40),
                u64_at(p + 48),
            )
        })
        .collect();
    assert_eq!(code.len(), 1, "one code segment: {code:x?}");
    let (offset, vaddr, size, align) = code[0];
    assert_eq!(offset % MB2, 0, "the code's file offset {offset:#x}");
    assert_eq!(vaddr % MB2, 0, "the code's address {vaddr:#x}");
    assert!(align >= MB2, "the segments' alignment {align:#x}");
    assert!(size > MB2, "the code is {size:#x} bytes");
    assert!(
        entry >= vaddr + MB2 && entry < vaddr + size,
        "the entry point {entry:#x} lies in the code's first 2 MB (from {vaddr:#x})"
    );
}
