#!/usr/bin/env python3
"""Judging quality: the same CPU-bound submission judged N times; the spread of the CPU
time the sandbox reports (max/min), next to the spread of the same work timed outside
any sandbox in the same loop (the machine's own noise).

    python3 bench/judge_spread.py [--runs 20] [--target 0.5]    # as the user who judges
"""
import argparse
import os
import statistics
import subprocess
import sys

from sandbox import judge

SOURCE = """#include <stdio.h>
int main(void) { volatile unsigned long s = 0; for (unsigned long i = 0; i < %dUL; i++) s += i; printf("%%lu\\n", s); return 0; }
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.5, help="seconds of CPU the program should use")
    args = ap.parse_args()
    # calibrate the loop to about --target seconds of CPU, outside the sandbox
    art, res = judge.compile("c", (SOURCE % 100_000_000).encode())
    assert art, res.stderr
    t = os.times()
    subprocess.run([art.path], stdout=subprocess.DEVNULL, check=True)
    per_iter = (os.times().children_user + os.times().children_system - t.children_user - t.children_system) / 1e8
    n = int(args.target / per_iter)
    art.close()
    art, res = judge.compile("c", (SOURCE % n).encode())
    inside, outside = [], []
    for _ in range(args.runs):
        r = art.run(limits={"cpu_time": "10s", "wall_time": "30s"})
        assert r.status == "OK", r.message
        inside.append(r.cpu_time_s)
        t = os.times()
        subprocess.run([art.path], stdout=subprocess.DEVNULL, check=True)
        outside.append(os.times().children_user + os.times().children_system - t.children_user - t.children_system)
    art.close()
    for name, xs in (("sandbox, reported CPU", inside), ("same binary outside, rusage", outside)):
        print(f"{name:<30} n={len(xs)} min={min(xs):.3f} median={statistics.median(xs):.3f} "
              f"max={max(xs):.3f} max/min={max(xs) / min(xs):.3f}")


if __name__ == "__main__":
    sys.exit(main())
