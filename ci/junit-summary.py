#!/usr/bin/env python3
"""Summarise JUnit XML files as Markdown (for $GITHUB_STEP_SUMMARY or a job log).

Usage: ci/junit-summary.py [--title T] FILE_OR_DIR...   (directories are searched for *.xml)
Exit code 0 even when tests failed: the test step itself carries the verdict.
Expected failures (XFAIL) carry the testcase property `outcome` in ot-hil's JUnit; they are
counted apart from the passes, and flaky passes (property `flaky`) are counted too.
"""
import argparse
import pathlib
import sys
import xml.etree.ElementTree as ET


def files(args):
    for a in args:
        p = pathlib.Path(a)
        if p.is_dir():
            yield from sorted(p.rglob("*.xml"))
        elif p.is_file():
            yield p


def first_line(text, limit=200):
    line = (text or "").strip().splitlines()[0:1]
    line = line[0] if line else ""
    return (line[: limit - 1] + "…") if len(line) > limit else line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="ot-hil results")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "xfail": 0, "flaky": 0}
    rows = []
    problems = []
    for f in files(a.paths):
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError as e:
            problems.append(f"{f}: not JUnit XML ({e})")
            continue
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        for s in suites:
            for case in s.findall("testcase"):
                totals["tests"] += 1
                name = f"{case.get('classname', s.get('name', ''))}::{case.get('name', '')}".strip(":")
                props = {p.get("name"): p.get("value") for p in case.findall("properties/property")}
                if props.get("flaky") == "true":
                    totals["flaky"] += 1
                if props.get("outcome") == "XFAIL":
                    totals["xfail"] += 1
                    continue
                for kind, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
                    el = case.find(kind)
                    if el is not None:
                        totals[key] += 1
                        if kind != "skipped":
                            msg = el.get("message") or el.text
                            rows.append(f"| {kind} | `{name}` | {first_line(msg).replace('|', '/')} |")
                        break
    passed = (
        totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"] - totals["xfail"]
    )
    out = [f"### {a.title}", ""]
    out.append(
        f"{passed} passed, {totals['xfail']} failed as expected (XFAIL), {totals['failures']} failed, "
        f"{totals['errors']} errors, {totals['skipped']} skipped ({totals['tests']} test cases)"
        + (f", {totals['flaky']} flaky" if totals["flaky"] else "")
    )
    if rows:
        out += ["", "| result | case | message |", "|---|---|---|", *rows]
    if problems:
        out += ["", *[f"- {p}" for p in problems]]
    if totals["tests"] == 0 and not problems:
        out += ["", "No JUnit results found."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
