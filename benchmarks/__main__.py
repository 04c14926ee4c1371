"""`python -m benchmarks` (`make bench`): every benchmark in turn; each prints its figures."""

import subprocess
import sys

RUNS = (["epoch_speed"], ["inference"], ["anomaly"], ["scatter"], ["realism"], ["out_of_core", "--cold"],
        ["data_parallel"])

for name, *args in RUNS:
    print(f"\n===== benchmarks.{name} {' '.join(args)} =====", flush=True)
    subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], check=True)
