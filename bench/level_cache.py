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
"""
import os
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


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    level(sys.argv[1:])
