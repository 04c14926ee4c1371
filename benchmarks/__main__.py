"""`python -m benchmarks` (`make bench`): every benchmark in turn; each prints its figures."""

import subprocess
import sys

for name in ("epoch_speed", "inference", "anomaly", "out_of_core"):
    print(f"\n===== benchmarks.{name} =====", flush=True)
    subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=True)
