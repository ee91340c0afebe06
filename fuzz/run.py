"""``make fuzz``: every atheris target for FUZZ_SECONDS each; executions and findings.

Usage: ``python fuzz/run.py [SECONDS] [TARGET...]`` (default 600 s, all targets, run one
after another). Corpora and crash artifacts go to ``build/fuzz/<target>/``. The exit code
is 1 when any target found a crash (the artifact path is printed), else 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "fuzz")]

from seeds import write  # noqa: E402

TARGETS = {
    "protobuf": "fuzz_protobuf.py",
    "json": "fuzz_json.py",
    "exposition": "fuzz_exposition.py",
}
STAT_RE = re.compile(r"stat::(\w+):\s*(\d+)")


def run_target(name: str, seconds: int) -> tuple[dict[str, int], list[Path]]:
    """Run one target; its libFuzzer final stats and any crash artifacts."""
    work = ROOT / "build" / "fuzz" / name
    corpus, seeds = work / "corpus", work / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    if name != "exposition":
        write(seeds, json=name == "json")
    else:
        seeds.mkdir(parents=True, exist_ok=True)
        (seeds / "seed-00").write_bytes(bytes(range(256)))
    before = set(work.glob("crash-*")) | set(work.glob("timeout-*")) | set(work.glob("oom-*"))
    command = [
        sys.executable, str(ROOT / "fuzz" / TARGETS[name]), str(corpus), str(seeds),
        f"-max_total_time={seconds}", f"-artifact_prefix={work}/", "-print_final_stats=1",
        "-timeout=20", "-rss_limit_mb=3072", "-max_len=65536",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "fuzz")])}
    log = work / "fuzz.log"
    started = time.monotonic()
    with log.open("w") as out:
        subprocess.run(  # noqa: S603  (our own interpreter and harness)
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    stats = {"elapsed": round(time.monotonic() - started)}
    stats |= {k: int(v) for k, v in STAT_RE.findall(log.read_text(errors="replace"))}
    after = set(work.glob("crash-*")) | set(work.glob("timeout-*")) | set(work.glob("oom-*"))
    return stats, sorted(after - before)


def main(argv: list[str]) -> int:
    """Run the chosen targets and print one summary line each."""
    seconds = int(argv[0]) if argv else int(os.environ.get("FUZZ_SECONDS", "600"))
    names = argv[1:] or list(TARGETS)
    failed = False
    for name in names:
        stats, found = run_target(name, seconds)
        executions = stats.get("number_of_executed_units", 0)
        elapsed = stats["elapsed"]
        rate = executions // max(elapsed, 1)
        print(f"{name}: {executions} executions in {elapsed}s (~{rate}/s), "
              f"peak RSS {stats.get('peak_rss_mb', 0)} MB, findings: {len(found)}")  # fmt: skip
        for path in found:
            print(f"  {path}")
        failed = failed or bool(found) or not executions
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
