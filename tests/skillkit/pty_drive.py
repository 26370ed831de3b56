#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal and types into it, as a user would.

usage: pty_drive.py STEPS_JSON -- CMD [ARGS...]
STEPS_JSON is a list of [text to wait for, text to type]. Prints one JSON object:
{"status": exit code (or -signal), "output": everything the terminal showed}.
"""
import json
import os
import pty
import select
import sys
import time


def main():
    sep = sys.argv.index("--")
    steps = json.loads(sys.argv[1])
    argv = sys.argv[sep + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    pos = 0
    deadline = time.time() + 60

    def pump(timeout):
        nonlocal out
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
        return True

    alive = True
    for want, send in steps:
        want = want.encode()
        while alive and out.find(want, pos) < 0 and time.time() < deadline:
            alive = pump(0.2)
        idx = out.find(want, pos)
        if idx < 0:
            break
        pos = idx + len(want)
        time.sleep(0.1)
        os.write(fd, send.encode())
    while alive and time.time() < deadline:
        alive = pump(0.5)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    print(json.dumps({"status": code, "output": out.decode("utf-8", "replace")}))


main()
