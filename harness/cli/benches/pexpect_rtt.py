#!/usr/bin/env python3
"""Reference for the ot-hil benchmark: pexpect driving a virtual DK's console (its PTY link).

Usage: pexpect_rtt.py <pty link> <command line> <count> <delaybeforesend seconds or "none">
Prints one JSON object: {"median_us": .., "p99_us": .., "count": ..}.
"""
import json
import os
import sys
import time

import pexpect.fdpexpect


def main():
    link, command, count, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    child = pexpect.fdpexpect.fdspawn(fd, timeout=10)
    # pexpect's pty `spawn.send` sleeps `delaybeforesend` (default 0.05 s) before each write;
    # `fdspawn.send` (used here to open the board's PTY link like a serial port) skips it, so the
    # same rule is applied by hand.
    child.delaybeforesend = None if delay == "none" else float(delay)
    # Drain whatever the board printed before (banner, prompt).
    child.sendline("")
    time.sleep(0.2)
    try:
        child.read_nonblocking(65536, timeout=0.1)
    except (pexpect.TIMEOUT, pexpect.EOF):
        pass
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        if child.delaybeforesend:
            time.sleep(child.delaybeforesend)
        child.sendline(command)
        child.expect_exact("Done")
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    median = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(json.dumps({"median_us": median, "p99_us": p99, "count": count}))


main()
