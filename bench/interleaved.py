#!/usr/bin/env python3
"""Runs commands alternately and compares their wall times: every iteration runs each
command once, in a new random order, so that the machine's drift and the leftovers of the
command before (the kernel's deferred teardown of namespaces, for one) touch them all alike.
Prints each command's median and the median of its paired differences with the first one.
A tool for changes, finer than bench/compare.sh's rounds; not a section of bench/run.sh.

    python3 bench/interleaved.py N NAME='COMMAND ARGS' NAME='COMMAND ARGS'...

Commands are split on spaces and run without a shell (the first word is a path);
their output goes to /dev/null. Each executable is first dropped from the page cache and
comes back through the warm-up runs, so that builds are compared in the same page-cache
state (see level_cache.py). Run as root on a quiet machine, like the benchmarks.
"""
import os
import random
import statistics
import sys
import time

import level_cache


def main():
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    n = int(sys.argv[1])
    cmds = []
    for arg in sys.argv[2:]:
        name, _, line = arg.partition("=")
        if not line:
            sys.exit("interleaved: %r is not NAME=COMMAND" % arg)
        cmds.append((name, line.split()))
    null = os.open(os.devnull, os.O_RDWR)
    quiet = [(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]

    def once(argv):
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=quiet)
        _, status = os.waitpid(pid, 0)
        t1 = time.perf_counter_ns()
        if status != 0:
            sys.exit("interleaved: %s exited with status %d" % (" ".join(argv), status))
        return (t1 - t0) / 1e6

    # Every executable comes back into the page cache the same way (see level_cache.py).
    level_cache.level(sorted({argv[0] for _, argv in cmds}))
    for _, argv in cmds:
        for _ in range(10):
            once(argv)
    times = {name: [] for name, _ in cmds}
    for _ in range(n):
        order = list(cmds)
        random.shuffle(order)
        for name, argv in order:
            times[name].append(once(argv))
    base = cmds[0][0]
    for name, _ in cmds:
        t = times[name]
        diff = [a - b for a, b in zip(t, times[base])]
        print("%-10s median %.3f ms  p25 %.3f  p75 %.3f  paired difference with %s: median %+.3f ms"
              % (name, statistics.median(t), statistics.quantiles(t, n=4)[0],
                 statistics.quantiles(t, n=4)[2], base, statistics.median(diff)))


if __name__ == "__main__":
    main()
