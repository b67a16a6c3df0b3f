"""doctor on a 7B-shaped model directory (sparse shards with real safetensors headers).

Target (issue 5): well under a second, because doctor reads configs and headers only.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from kochallenge_data.ml.doctor import doctor
from tests.ml.test_doctor import make_7b_shaped_dir


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = make_7b_shaped_dir(Path(folder))
        for label, base in (("doctor", None), ("doctor --base (itself)", path)):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                report = doctor(path, base=base, max_model_len=4096)
                times.append(time.perf_counter() - started)
            print(f"| {label} | median {statistics.median(times):.3f} s over 5 runs, exit {report.exit_code()} |")


if __name__ == "__main__":
    main()
