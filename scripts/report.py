#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a VM test run: print the guest's TAP, fail tests that never
reported (the VM died or hung), fail the run on any kernel splat in the
console, and end with "N passed, N failed".

usage: report.py OUTDIR EXPECTED_TESTS HOST_RC
"""
import re
import sys
from pathlib import Path

# BUG: covers KASAN reports, WARNING: and INFO: possible most of lockdep's.
SPLATS = re.compile(
    r"BUG:|WARNING:|Oops|Kernel panic|general protection fault|UBSAN:|"
    r"INFO: possible|DEBUG_LOCKS_WARN_ON|suspected memory leak|"
    r"unreferenced object|detected stalls|blocked for more than"
)
# A stack dump is a splat too (sysfs_warn_dup, for one, names no BUG or
# WARNING), unless the lines before it show one that a test asks for.
EXPECTED_DUMPS = re.compile(r"invoked oom-killer|page allocation failure|FAULT_INJECTION: forcing a failure")
DUMP_HEADER_LINES = 8


def unexpected_dumps(lines):
    """For each stack dump not preceded by an expected cause, the line
    before its "CPU:" line (what the kernel said of the cause)."""
    found = []
    for i, line in enumerate(lines):
        if "Call Trace:" not in line:
            continue
        before = lines[max(0, i - DUMP_HEADER_LINES):i]
        if not any(EXPECTED_DUMPS.search(b) for b in before):
            cpu = [j for j, b in enumerate(before) if re.search(r"\bCPU: \d+", b)]
            found.append(before[cpu[-1] - 1] if cpu and cpu[-1] > 0 else line)
    return found

def main():
    out, expected, host_rc = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    output = (out / "output.log").read_text(errors="replace") if (out / "output.log").exists() else ""
    console = (out / "console.log").read_text(errors="replace") if (out / "console.log").exists() else ""
    print(output, end="")

    passed = failed = skipped = 0
    seen = 0
    for line in output.splitlines():
        if re.match(r"^ok \d+ ", line):
            seen += 1
            if "# SKIP" in line:
                skipped += 1
            else:
                passed += 1
        elif re.match(r"^not ok \d+ ", line):
            seen += 1
            failed += 1
    if seen < expected:
        print(f"not ok - {expected - seen} test(s) did not report: the VM died or timed out")
        failed += expected - seen
    if not (out / "status").exists():
        print("# the VM did not finish; console tail:")
        for line in console.splitlines()[-30:]:
            print("#   " + line)

    splats = [l for l in console.splitlines() + output.splitlines() if SPLATS.search(l)]
    splats += unexpected_dumps(console.splitlines())
    if splats:
        print("not ok - kernel log clean")
        for line in splats[:40]:
            print("#   " + line)
        failed += 1
    else:
        print("ok - kernel log clean")
        passed += 1

    if host_rc:
        print("not ok - host tests")
        failed += 1
    else:
        print("ok - host tests")
        passed += 1

    summary = f"{passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary)
    sys.exit(1 if failed else 0)

main()
