"""Where the benchmarks write their figures: one JSON file per benchmark run under ``results/bench/``.

The file name says what was run (``bench_extract-iemocap-synth-lld-n60-cpu.json``), so rerunning the same
benchmark replaces its file and README can cite a stable path; the content records the command, the machine,
the time and every row the benchmark printed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

RESULTS_BENCH = Path(__file__).resolve().parents[1] / "results" / "bench"


def bench_json_path(benchmark: str, *parts: object, root: Path = RESULTS_BENCH) -> Path:
    """``<root>/<benchmark>-<part>-<part>….json``; each part made file-name safe (``wav2vec:random-large`` ->
    ``wav2vec-random-large``; paths keep their last component)."""
    safe = []
    for p in parts:
        s = str(p).rstrip("/")
        if "/" in s:
            s = s.split(":", 1)[0] + "-" + Path(s.split(":", 1)[-1]).stem if ":" in s else Path(s).stem
        safe.append(re.sub(r"[^A-Za-z0-9._]+", "-", s).strip("-."))
    return root / ("-".join([benchmark, *filter(None, safe)]) + ".json")


def write_bench_json(path: Path, record: dict) -> Path:
    """Write ``record`` (plus ``written_utc``) as indented JSON to ``path`` (folders created); print the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"figures: {path}")
    return path
