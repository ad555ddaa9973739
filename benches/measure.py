#!/usr/bin/env python3
"""Run a command N times; print median and min wall time and peak RSS (from wait4's rusage).

usage: measure.py LABEL RUNS -- CMD...   (prints one Markdown table row)
"""
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    label, runs = sys.argv[1], int(sys.argv[2])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    walls, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        walls.append(time.perf_counter() - start)
        rss.append(usage.ru_maxrss)  # KiB on Linux
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 2):
            sys.exit(f"{label}: {' '.join(cmd)} exited {code}: {p.stderr.read().decode()}")
    print(f"| {label} | {runs} | {statistics.median(walls) * 1000:.1f} | {min(walls) * 1000:.1f} "
          f"| {max(rss) / 1024:.1f} |")


if __name__ == "__main__":
    main()
