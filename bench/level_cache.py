#!/usr/bin/env python3
"""Puts executables on an equal footing in the page cache before they are compared.

How a file came into the page cache changes how fast it starts. A binary just written with
write() or copied (cp, install) sits in large folios (64 KiB here); the linker's output
(written through a memory mapping) and a file first read by exec's page faults, as after a
boot, sit mostly in 4 KiB pages. On this machine the same omac binary ran a confined
/bin/true about 0.2 ms faster from a fresh copy than from the linker's output: a comparison
of a freshly copied build with an older one measures that, not the change. So the tools
that compare builds (interleaved.py, compare.sh) first drop each compared executable from
the page cache; their warm-up runs then bring every one back the same way, through exec.

    python3 bench/level_cache.py FILE...
    python3 bench/level_cache.py --huge FILE   # MB of FILE cached in 2 MB folios (root)

omac asks for its code in 2 MB folios, which its processes map with one page-table entry
per 2 MB (src/entry.rs); `--huge` says how much of a file the page cache holds so.
"""
import ctypes
import mmap
import os
import struct
import sys


def level(paths):
    """Drops each file's cached pages (those no running process maps). A file just written
    is written back first: dirty pages are not dropped."""
    for p in paths:
        fd = os.open(os.path.realpath(p), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def huge_mb(path):
    """MB of `path` in the page cache in 2 MB folios, read from /proc/kpageflags (a folio
    is a head page and its tail pages) through a mapping of the file: None when that
    cannot be read (not root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pages = (size + 4095) // 4096
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, f.fileno(), 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        return None
    byte = ctypes.c_char()
    cached = (ctypes.c_ubyte * pages)()
    if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), cached) != 0:
        return None
    try:
        pagemap, flags = open("/proc/self/pagemap", "rb"), open("/proc/kpageflags", "rb")
    except OSError:
        return None
    head_run, huge = 0, 0
    for i in range(pages):
        if not cached[i] & 1:
            head_run = 0
            continue
        # Mapped (it is cached: no read), so that pagemap names it.
        ctypes.memmove(ctypes.byref(byte), addr + i * 4096, 1)
        pagemap.seek((addr // 4096 + i) * 8)
        entry = struct.unpack("Q", pagemap.read(8))[0]
        if not entry >> 63:
            head_run = 0
            continue
        flags.seek((entry & ((1 << 55) - 1)) * 8)
        f = struct.unpack("Q", flags.read(8))[0]
        if f >> 15 & 1:
            head_run = 1
        elif f >> 16 & 1 and head_run:
            head_run += 1
        else:
            head_run = 0
        if head_run == 512:
            huge += 1
    return huge * 2


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--huge":
        mb = huge_mb(sys.argv[2])
        print("unknown (needs root)" if mb is None else "%d MB" % mb)
    else:
        level(sys.argv[1:])
