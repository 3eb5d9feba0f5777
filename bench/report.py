#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a benchmark run of bench/guest-bench.sh: medians over the
repetitions, each throughput also as a ratio to the raw device of the same
target in the same boot, take latency, memory per GiB of device, and the
performance targets of the project (reported, never enforced).

usage: report.py [--mode quick|full] [--results-md FILE] VM_OUT REPORT_DIR

VM_OUT is the VM's output directory (bench.jsonl, fio/, console.log,
status); REPORT_DIR gets results.json, results.md and ratios.png. With
--results-md, FILE gets the tables with the date and the machine.
Exits 1 if the run is broken: the guest did not finish or reported an error,
a figure is missing, or the kernel log has a splat. Figures never fail it.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent

# (setup, what it is), in table order.
SETUPS = [
    ("raw", "raw device (the limit)"),
    ("tracking", "blksnap filter attached, tracking only"),
    ("blksnap-first", "blksnap snapshot held: first-touch writes (pay COW)"),
    ("blksnap-rewrite", "blksnap snapshot held: rewrites of copied chunks"),
    ("dm-first", "dm-snapshot: first-touch writes"),
    ("dm-rewrite", "dm-snapshot: rewrites of copied chunks"),
    ("blksnap-image-unchanged", "blksnap image, no chunk copied"),
    ("dm-image-unchanged", "dm-snapshot image, no chunk copied"),
    ("blksnap-image-copied", "blksnap image, every chunk copied"),
    ("dm-image-copied", "dm-snapshot image, every chunk copied"),
]
WRITES = ["randwrite4k", "seqwrite1m"]
READS = ["randread4k", "seqread1m"]
# At iodepth 1 and 32 (the others at 4): raw device and copied images.
DEPTH_READS = ["randread4k-qd1", "seqread1m-qd1", "randread4k-qd32", "seqread1m-qd32"]
WORKLOADS = WRITES + READS + DEPTH_READS
# Which workloads each setup runs.
EXPECTED = {
    "raw": WORKLOADS,
    "tracking": WRITES + READS,
    "blksnap-first": WRITES,
    "blksnap-rewrite": WRITES,
    "dm-first": WRITES,
    "dm-rewrite": WRITES,
    "blksnap-image-unchanged": READS,
    "dm-image-unchanged": READS,
    "blksnap-image-copied": READS + DEPTH_READS,
    "dm-image-copied": READS + DEPTH_READS,
}
TAKE_COUNTS = [1, 4, 16]
# The targets guest-bench.sh knows, as its BENCH_PARTS name them.
TARGETS = ["virtio", "loop"]
MEMORY = [
    ("cbt", "CBT tables (filter attached)"),
    ("snapshot-idle", "snapshot taken, no chunk copied"),
    ("chunks-copied", "chunk map, every chunk copied and stored"),
]
GIB = 1 << 30
MIB = 1 << 20


# Kernel splats, as scripts/report.py looks for them in the tests' console.
SPLATS = re.compile(
    r"BUG:|WARNING:|Oops|Kernel panic|general protection fault|UBSAN:|"
    r"INFO: possible|DEBUG_LOCKS_WARN_ON|suspected memory leak|"
    r"unreferenced object|detected stalls|blocked for more than"
)


def load_fio(path):
    """A fio JSON result; fio may print notes before the JSON."""
    text = path.read_text(errors="replace")
    return json.loads(text[text.index("{"):])


def median(values):
    return statistics.median(values) if values else None


def read_run(out):
    records, problems = [], []
    jsonl = out / "bench.jsonl"
    if not jsonl.exists():
        problems.append(f"{jsonl} is missing: the benchmark did not start")
        return records, problems
    for line in jsonl.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"bad line in bench.jsonl: {line!r}")
    return records, problems


def throughput(records, out, problems):
    """{(target, setup, workload): {iops, mib_s, lat_us, samples...}}"""
    samples = {}
    for r in records:
        if r.get("type") != "fio":
            continue
        key = (r["target"], r["setup"], r["workload"])
        try:
            jobs = load_fio(out / r["file"])["jobs"]
            job = next(j for j in jobs if j["jobname"] == r.get("job", j["jobname"]))
        except (OSError, ValueError, KeyError, StopIteration) as e:
            problems.append(f"{r['file']}: {e}")
            continue
        d = job["write"] if "write" in r["workload"] else job["read"]
        samples.setdefault(key, []).append(
            (d["iops"], d["bw_bytes"] / MIB, d["lat_ns"]["mean"] / 1000.0))
    cells = {}
    for key, s in samples.items():
        cells[key] = {
            "reps": len(s),
            "iops": median([x[0] for x in s]),
            "mib_s": median([x[1] for x in s]),
            "lat_us": median([x[2] for x in s]),
            "samples_iops": [x[0] for x in s],
        }
    for (target, setup, w), c in cells.items():
        raw = cells.get((target, "raw", w))
        c["ratio"] = c["iops"] / raw["iops"] if raw and raw["iops"] else None
    return cells


def machine(meta):
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    guest_cpu = meta.get("guest_cpu", "")
    return {
        "host_cpu": cpu,
        "host_cpus": os.cpu_count(),
        "host_ram_gib": round(mem_kb / (1 << 20), 1),
        "host_kernel": platform.release(),
        # vm.sh runs QEMU with -cpu max under TCG, -cpu host under KVM.
        "accel": "TCG" if "TCG" in guest_cpu else "KVM",
        "guest_cpus": meta.get("guest_cpus"),
        "guest_ram_gib": round(meta.get("guest_mem_kb", 0) / (1 << 20), 1),
        "guest_kernel": meta.get("kernel"),
    }


def commit():
    try:
        return subprocess.run(["git", "-C", str(TOP), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt_cell(c, workload):
    if not c:
        return "-"
    if "4k" in workload:
        figure = f"{c['iops']:,.0f} IOPS"
    else:
        figure = f"{c['mib_s']:,.1f} MiB/s"
    ratio = f" ({c['ratio']:.2f})" if c.get("ratio") is not None else ""
    return figure + ratio


def goals(cells, takes, memory, targets):
    """The project's performance targets: (what, figure, goal, met)."""
    rows = []

    def ratio(t, s, w):
        c = cells.get((t, s, w))
        return c["ratio"] if c else None

    def of_dm(t, s, dm, w):
        b, d = cells.get((t, s, w)), cells.get((t, dm, w))
        return b["iops"] / d["iops"] if b and d and d["iops"] else None

    for t in targets:
        for w in WRITES:
            rows.append((f"{t}: tracking only, {w}, of raw", ratio(t, "tracking", w), ">= 0.98"))
        for w, goal in (("randwrite4k", ">= 2.7"), ("seqwrite1m", ">= 2.4")):
            rows.append((f"{t}: snapshot first-touch {w}, of dm-snapshot",
                         of_dm(t, "blksnap-first", "dm-first", w), goal))
        for w in WRITES:
            rows.append((f"{t}: snapshot rewrites, {w}, of raw", ratio(t, "blksnap-rewrite", w), ">= 0.95"))
        for s in ("blksnap-image-unchanged", "blksnap-image-copied"):
            rows.append((f"{t}: {s} seqread1m, of the original's", ratio(t, s, "seqread1m"), ">= 0.90"))
        for w in READS + DEPTH_READS:
            rows.append((f"{t}: image copied {w}, of dm-snapshot's",
                         of_dm(t, "blksnap-image-copied", "dm-image-copied", w), ">= 1.0"))
    rows.append(("take of 4 idle devices, ms", takes.get(4, {}).get("median_ms"), "< 50"))
    chunks = memory.get("chunks-copied", {})
    rows.append(("chunk map, bytes per copied chunk", chunks.get("per_chunk"), "<= 32"))
    out = []
    for what, value, goal in rows:
        if value is None:
            met = None
        elif goal.startswith(">="):
            met = value >= float(goal[2:])
        elif goal.startswith("<="):
            met = value <= float(goal[2:])
        else:
            met = value < float(goal[1:])
        out.append({"target": what, "value": value, "goal": goal, "met": met})
    return out


def chart(cells, targets, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {s: plt.cm.tab10(i % 10) for i, (s, _) in enumerate(SETUPS)}
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(7 * max(len(targets), 1), 9),
                             squeeze=False)
    for ax, t in zip(axes[0], targets):
        labels, values, cols = [], [], []
        for w in WORKLOADS:
            for s, _ in SETUPS:
                c = cells.get((t, s, w))
                if s == "raw" or not c or c.get("ratio") is None:
                    continue
                labels.append(f"{w} {s}")
                values.append(c["ratio"])
                cols.append(colors[s])
        y = range(len(labels))
        ax.barh(list(y), values, color=cols)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xlabel("ratio to the raw device (IOPS)")
        ax.set_title(f"{t}")
        for yi, v in zip(y, values):
            ax.text(v, yi, f" {v:.2f}", va="center", fontsize=7)
    fig.suptitle("blksnap benchmark: throughput as a ratio to the raw device, same boot")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(summary):
    m, meta = summary["machine"], summary["meta"]
    lines = [
        f"Mode `{summary['mode']}`: medians of {meta.get('reps')} repetition(s) of "
        f"{meta.get('runtime_s')} s fio runs ({meta.get('fio')}, {meta.get('engine')}, "
        f"direct I/O, iodepth 4), chunk {meta.get('chunk_bytes', 0) // 1024} KiB for blksnap "
        "and dm-snapshot. In brackets: the ratio to the raw device of the same target in the "
        "same boot (IOPS).",
        "",
    ]
    for t in summary["targets"]:
        tinfo = summary["target_devices"].get(t, {})
        lines += [
            f"### {t}: {tinfo.get('dev', '?')}, {tinfo.get('bytes', 0) // MIB} MiB "
            f"(storage {tinfo.get('cow', '?')}, {tinfo.get('cow_bytes', 0) // MIB} MiB)",
            "",
            "| setup | " + " | ".join(WORKLOADS) + " |",
            "|---|" + "---|" * len(WORKLOADS),
        ]
        cells = {(c["setup"], c["workload"]): c for c in summary["throughput"] if c["target"] == t}
        for s, desc in SETUPS:
            row = [fmt_cell(cells.get((s, w)), w) if w in EXPECTED[s] else "" for w in WORKLOADS]
            lines.append(f"| {s}: {desc} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["### Snapshot take latency (the ioctl, idle 64 MiB loop devices)", "",
              "| devices | median ms | samples ms |", "|---|---|---|"]
    for n in TAKE_COUNTS:
        t = summary["take"].get(str(n)) or summary["take"].get(n)
        if t:
            lines.append(f"| {n} | {t['median_ms']:.2f} | "
                         + ", ".join(f"{x:.2f}" for x in t["samples_ms"]) + " |")
        else:
            lines.append(f"| {n} | - | |")
    lines += ["", "### Module memory per GiB of device (unreclaimable slab + vmalloc)", "",
              "| what | measured per GiB | by design per GiB | measured | on a device of |",
              "|---|---|---|---|---|"]
    for what, desc in MEMORY:
        r = summary["memory"].get(what)
        if not r:
            lines.append(f"| {desc} | - | - | - | |")
            continue
        design = f"{r['formula_per_gib'] / 1024:,.1f} KiB" if r.get("formula_per_gib") is not None else "-"
        extra = f", {r['per_chunk']:.0f} B per chunk" if r.get("per_chunk") is not None else ""
        per_gib = f"{r['per_gib'] / 1024:,.1f} KiB"
        if r.get("chunk_bytes"):
            # Chunks smaller than the default: per GiB would not be the default's cost.
            extra += f" of {r['chunk_bytes'] / 1024:,.0f} KiB"
            per_gib = "-"
        lines.append(f"| {desc} | {per_gib} | {design} | "
                     f"{r['delta_bytes'] / 1024:,.1f} KiB{extra} | {r['device_bytes'] / MIB:,.0f} MiB |")
    notes = summary["memory_notes"]
    if notes:
        lines += ["", "Readings are the kernel's `SUnreclaim` + `VmallocUsed`, after dropping caches: "
                  f"with nothing happening they moved by {notes.get('noise', 0) / 1024:,.1f} KiB; "
                  "after the snapshot of the virtio disk was destroyed and the device detached, "
                  f"{notes.get('residual', 0) / 1024:,.1f} KiB more than before its snapshot."]
    lines += ["", "### Targets (reported, not enforced)", "",
              "| target | figure | goal | met |", "|---|---|---|---|"]
    for g in summary["goals"]:
        v = "-" if g["value"] is None else f"{g['value']:.2f}"
        met = "-" if g["met"] is None else ("yes" if g["met"] else "no")
        lines.append(f"| {g['target']} | {v} | {g['goal']} | {met} |")
    if summary["problems"]:
        lines += ["", "### Problems", ""] + [f"- {p}" for p in summary["problems"]]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="full")
    ap.add_argument("--results-md")
    ap.add_argument("vm_out")
    ap.add_argument("report_dir")
    a = ap.parse_args()
    out, rdir = Path(a.vm_out), Path(a.report_dir)
    rdir.mkdir(parents=True, exist_ok=True)

    records, problems = read_run(out)
    status = (out / "status").read_text().strip() if (out / "status").exists() else None
    if status is None:
        problems.append("the VM did not finish (no status)")
    elif status != "0":
        problems.append(f"the guest benchmark exited with status {status}")
    problems += [f"guest: {r.get('what')}" for r in records if r.get("type") == "error"]
    console = (out / "console.log").read_text(errors="replace") if (out / "console.log").exists() else ""
    splats = [l for l in console.splitlines() if SPLATS.search(l)]
    problems += [f"kernel: {l.strip()}" for l in splats[:20]]

    meta = next((r for r in records if r.get("type") == "meta"), {})
    tdev = {r["target"]: r for r in records if r.get("type") == "target"}
    targets = list(tdev)
    parts = meta.get("parts", " ".join(["memory", "take"] + TARGETS)).split()
    problems += [f"no target {t}" for t in TARGETS if t in parts and t not in tdev]
    cells = throughput(records, out, problems)
    for t in targets:
        for s, ws in EXPECTED.items():
            for w in ws:
                if (t, s, w) not in cells:
                    problems.append(f"no figure for {t} {s} {w}")

    takes = {}
    for n in TAKE_COUNTS:
        ms = [r["ns"] / 1e6 for r in records if r.get("type") == "take" and r["devices"] == n]
        if ms:
            takes[n] = {"median_ms": median(ms), "samples_ms": ms}
        elif "take" in parts:
            problems.append(f"no take latency for {n} devices")

    memory = {}
    for what, _ in MEMORY:
        r = next((r for r in records if r.get("type") == "mem" and r["what"] == what), None)
        if not r:
            if "memory" in parts:
                problems.append(f"no memory figure for {what}")
            continue
        gib = r["device_bytes"] / GIB
        memory[what] = {
            "device_bytes": r["device_bytes"],
            "delta_bytes": r["delta_bytes"],
            "per_gib": r["delta_bytes"] / gib,
            "formula_per_gib": r["formula_bytes"] / gib if "formula_bytes" in r else None,
            "per_chunk": r["delta_bytes"] / r["chunks"] if r.get("chunks") else None,
            "chunk_bytes": r.get("chunk_bytes"),
        }

    memory_notes = {r["what"]: r["delta_bytes"] for r in records
                    if r.get("type") == "mem" and r.get("what") in ("noise", "residual")}

    summary = {
        "mode": a.mode,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(meta),
        "meta": meta,
        "targets": targets,
        "target_devices": tdev,
        "throughput": [dict(target=t, setup=s, workload=w, **c) for (t, s, w), c in sorted(cells.items())],
        "take": {str(n): v for n, v in takes.items()},
        "memory": memory,
        "memory_notes": memory_notes,
        "goals": goals(cells, takes, memory, targets),
        "problems": problems,
    }
    (rdir / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = markdown(summary)
    (rdir / "results.md").write_text(md)
    try:
        chart(cells, targets, rdir / "ratios.png")
    except Exception as e:  # the tables matter more than the chart
        problems.append(f"chart: {e}")
    print(md, end="")

    if a.results_md:
        m = summary["machine"]
        head = [
            "# Benchmark results",
            "",
            f"Written by `bash scripts/bench.sh` on {summary['date']} at commit "
            f"{summary['commit']}; what is measured and how: [README.md](README.md).",
            "",
            f"Machine: {m['host_cpus']} × {m['host_cpu']}, {m['host_ram_gib']} GiB RAM, "
            f"Linux {m['host_kernel']}; QEMU with {m['accel']}, guest {m['guest_cpus']} CPUs, "
            f"{m['guest_ram_gib']} GiB RAM, Linux {m['guest_kernel']}.",
            "",
        ]
        Path(a.results_md).write_text("\n".join(head) + md)

    for p in problems:
        print(f"bench: problem: {p}", file=sys.stderr)
    print(f"bench: {'broken run' if problems else 'ok'}; report in {rdir}", file=sys.stderr)
    sys.exit(1 if problems else 0)


main()
