"""What sampling a session's usage costs: the supervisor's sample, and the agent's read of it.

A process tree like an app's (``--procs`` sleeping processes below this one, as an app and its
children are below their supervisor) is sampled ``--rounds`` times with the supervisor's own
code (``supervisor/usage.py``: walk the descendants, read each ``/proc/<pid>/stat``, write
``usage.json``), and the file read back as the agent does for a poll
(``agent/usage.read_samples``: parse, check each sample). Printed: CPU time per sample and per
read, and what that is as a share of one core per running session at the default interval
(one sample every 5 s, one read per 25 s poll). The issue's bound: at most 1 % of a core.

Run: ``python bench/usage_sampling.py [--procs 8] [--rounds 2000]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from appyard.agent.supervisor.usage import Sampler  # noqa: E402
from appyard.agent.usage import DEFAULT_INTERVAL_S, read_samples  # noqa: E402

POLL_S = 25.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=8, help="processes in the sampled tree")
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    kids = [subprocess.Popen(["sleep", "600"]) for _ in range(args.procs)]
    try:
        with tempfile.TemporaryDirectory() as d:
            sampler = Sampler(d, DEFAULT_INTERVAL_S, 0)
            t0 = time.process_time()
            for _ in range(args.rounds):
                sampler.sample()
            sample_ms = (time.process_time() - t0) / args.rounds * 1000
            t0 = time.process_time()
            for _ in range(args.rounds):
                samples, _, _ = read_samples(Path(d), 0)
            read_ms = (time.process_time() - t0) / args.rounds * 1000
            assert len(samples) == 32
    finally:
        for k in kids:
            k.kill()
            k.wait()
    share = (sample_ms / DEFAULT_INTERVAL_S + read_ms / POLL_S) / 1000 * 100
    print(f"processes sampled: {args.procs}")
    print(f"supervisor, one sample: {sample_ms:.3f} ms of CPU")
    print(f"agent, one read of usage.json (32 samples): {read_ms:.3f} ms of CPU")
    print(
        f"per running session at {DEFAULT_INTERVAL_S:g} s / {POLL_S:g} s: "
        f"{share:.4f} % of one core (bound: 1 %)"
    )


if __name__ == "__main__":
    main()
