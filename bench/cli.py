"""Benchmark: how fast does the CLI answer? (issue 9: a CLI that answers at once)

Prints figures; asserts nothing about timings (design.md: benchmarks print, tests
never assert timings). Target (issue 9): ``dockwarden version`` <= 0.15 s, whole
process; ``--help`` fast too.

Measures the code of this tree (``src/`` first on ``PYTHONPATH``), run the way
the console script runs it: a script like the one pip writes for
``[project.scripts] dockwarden`` of this tree's ``pyproject.toml``. Also
``python -m dockwarden version`` (how the e2e tests call it).

  (a) whole-process wall time, median of ``--runs`` (default 10) after 2
      warm-up runs: ``dockwarden version``, ``dockwarden --help``,
      ``python -m dockwarden version`` and, for reference, ``python -c pass``.
      With ``hyperfine`` on PATH (Debian's package) it does the timing
      (``--shell=none``); else ``time.monotonic`` around ``subprocess.run``.
  (b) ``python -X importtime -c "import dockwarden.cli"``: the cumulative
      import time of ``dockwarden.cli`` (median of ``--runs``) and the 10
      slowest imports (cumulative) of the median run.

Usage::

    .venv/bin/python bench/cli.py
    .venv/bin/python bench/cli.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def entry_point() -> tuple[str, str]:
    """``[project.scripts] dockwarden`` of this tree: (module, attribute)."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["dockwarden"]
    module, _, attr = spec.partition(":")
    return module, attr


def console_script(dir_: Path) -> Path:
    """A script shaped like the one pip writes for the console entry point."""
    module, attr = entry_point()
    path = dir_ / "dockwarden"
    path.write_text(
        f"#!{sys.executable}\n"
        "import re\nimport sys\n"
        f"from {module} import {attr}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({attr}())\n")
    path.chmod(0o755)
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [e.get("PYTHONPATH")])])
    e.pop("DOCKWARDEN_URL", None)
    return e


def time_monotonic(argv: list[str], runs: int) -> list[float]:
    for _ in range(2):
        subprocess.run(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.monotonic() - t0)
    return times


def time_hyperfine(hyperfine: str, argv: list[str], runs: int, tmp: Path) -> list[float]:
    out = tmp / "hyperfine.json"
    subprocess.run([hyperfine, "--shell=none", "--warmup", "2", "--runs", str(runs), "--style", "none",
                    "--export-json", str(out), subprocess.list2cmdline(argv)],
                   env=env(), stdout=subprocess.DEVNULL, check=True)
    return json.loads(out.read_text())["results"][0]["times"]


def import_times(runs: int) -> tuple[list[float], list[tuple[float, str]]]:
    """Cumulative seconds of ``import dockwarden.cli`` per run, and the 10 slowest
    imports (cumulative seconds, name) of the median run."""
    per_run = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import dockwarden.cli"], env=env(),
                           capture_output=True, text=True, check=True)
        rows = []
        for line in r.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, self_us, cum_us, name = (x.strip() for x in line.replace("import time:", "|").split("|"))
            rows.append((int(cum_us) / 1e6, name))
        total = next(t for t, n in rows if n == "dockwarden.cli")
        per_run.append((total, sorted(rows, reverse=True)[:10]))
    per_run.sort(key=lambda x: x[0])
    return [t for t, _ in per_run], per_run[len(per_run) // 2][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    hyperfine = shutil.which("hyperfine")
    module, attr = entry_point()
    print(f"entry point: dockwarden = {module}:{attr}; python {sys.executable}; "
          f"timer: {'hyperfine' if hyperfine else 'time.monotonic around subprocess.run'}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        script = console_script(tmp)
        cases = [
            ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"]),
            ("dockwarden version", [sys.executable, str(script), "version"]),
            ("dockwarden --version", [sys.executable, str(script), "--version"]),
            ("dockwarden --help", [sys.executable, str(script), "--help"]),
            ("python -m dockwarden version", [sys.executable, "-m", "dockwarden", "version"]),
        ]
        for label, argv in cases:
            if label == "dockwarden --version":
                ok = subprocess.run(argv, env=env(), capture_output=True).returncode == 0
                if not ok:
                    print(f"{label:<38} (not supported by this tree)")
                    continue
            times = time_hyperfine(hyperfine, argv, args.runs, tmp) if hyperfine else time_monotonic(argv, args.runs)
            print(f"{label:<38} median {statistics.median(times):.3f} s  (min {min(times):.3f}, "
                  f"max {max(times):.3f}, {len(times)} runs)")
    totals, top = import_times(args.runs)
    print(f"\nimport dockwarden.cli (-X importtime, cumulative): median {statistics.median(totals):.3f} s "
          f"(min {min(totals):.3f}, max {max(totals):.3f}, {len(totals)} runs); top 10 of the median run:")
    for t, name in top:
        print(f"  {t:8.3f} s  {name}")


if __name__ == "__main__":
    main()
