#!/usr/bin/env python3
"""A scripted stand-in for an OpenThread CLI on a PTY (upstream profile: prompt "> ", no prefix).

Echoes typed characters like a UART shell, answers a few commands, and can misbehave on request
so the runner's failure classification can be tested without a virtual DK.
"""
import os
import sys
import time

PROMPT = b"> "
out = sys.stdout.buffer


def write(data):
    out.write(data)
    out.flush()


def line(text):
    write(text.encode() + b"\r\n")


def handle(cmd):
    words = cmd.split()
    if not words:
        return
    name, args = words[0], words[1:]
    if name == "state":
        line("leader")
        line("Done")
    elif name == "ipaddr":
        line("fdde:ad00:beef:0:0:ff:fe00:fc00")
        line("fdde:ad00:beef:0:1234:5678:9abc:def0")
        line("fe80:0:0:0:1c2b:3a4d:5e6f:7081")
        line("Done")
    elif name == "bad":
        line("Error 7: InvalidArgs")
    elif name == "later":
        # Result now, an asynchronous line later, glued to the prompt (as a real CLI does).
        line("Done")
        write(PROMPT)
        time.sleep(float(args[0]) if args else 0.05)
        line(" ".join(args[1:]) or "coaps connected")
    elif name == "interleave":
        # A callback line lands inside this command's output, before its own output and Done.
        line(" ".join(args))
        line("leader")
        line("Done")
    elif name == "garbage":
        write(b"\x1b]0;t\x07\x00\xff\xfe\x1b[31mnoise\x1b[0m\rmore\n\x1b(B")
        write(b"x" * 5000 + b"\r\n")
        line("Done")
    elif name == "assert":
        line("otPlatAssertFail at mac.cpp:123")
        line("Done")
    elif name == "reboot":
        line("Done")
        line("*** Booting Zephyr OS build v3.2.99-ncs1 ***")
    elif name == "exit":
        os._exit(3)
    elif name == "hang":
        time.sleep(3600)
    else:
        line("Error 35: InvalidCommand")


def main():
    write(b"fake cli ready\r\n" + PROMPT)
    buf = b""
    while True:
        try:
            data = os.read(0, 1024)
        except OSError:
            return
        if not data:
            return
        for b in data:
            c = bytes([b])
            if c in (b"\r", b"\n"):
                if c == b"\n" and buf == b"" and getattr(main, "last_cr", False):
                    main.last_cr = False
                    continue
                main.last_cr = c == b"\r"
                write(b"\r\n")
                handle(buf.decode(errors="replace"))
                buf = b""
                write(PROMPT)
            else:
                main.last_cr = False
                buf += c
                write(c)


main()
