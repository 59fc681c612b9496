"""How steady the machine itself is: a fixed unit of pure Python work, at a fixed pace.

    python -m bench.jitter COUNT

Runs COUNT units of arithmetic (each ~3 ms on the project's machine class, no I/O, no
other thread), one every 10 ms, the pace of the live workload, and prints the units'
wall times as JSON: ``{"p50": s, "p99": s, "max": s, "slow": n}`` (``slow``: units that
took more than three times the median). On a steady machine p99 is close to p50; on a
virtual machine whose CPUs are now and then taken away, a unit that should take 3 ms
sometimes takes 30, and so does any one step of anything else running then. The live
row prints it beside assetd's latencies, measured in the same run.
"""

from __future__ import annotations

import json
import sys
import time

PACE_S = 0.01  # one unit every 10 ms, as the live workload writes files


def unit() -> int:
    total = 0
    for i in range(40_000):
        total += i * i
    return total


def probe(count: int) -> dict[str, float]:
    walls: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        unit()
        walls.append(time.perf_counter() - started)
        time.sleep(PACE_S)
    walls.sort()
    median = walls[len(walls) // 2]
    return {
        "p50": median,
        "p99": walls[min(len(walls) - 1, int(len(walls) * 0.99))],
        "max": walls[-1],
        "slow": sum(1 for w in walls if w > 3 * median),
    }


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]))))
