"""Mutation scores per module after `mutmut run` (what `make mutation` prints).

Reads `mutmut results --all true` (one `name: status` line per mutant) in the repository root and prints,
for each mutated module, how many mutants the tests killed, which survived, and the score
``(killed + timeout) / checked``. With `--survivors` it also lists the surviving mutants (see each with
`mutmut show NAME`). Ends with a `RESULT mutation ...` line.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from vidrec import benchdocs

_NAME = re.compile(r"^\s*(?P<name>[\w.]+?)\.x[_ǁ]\S*?: (?P<status>.+)$")
_KILLED = ("killed", "timeout", "caught by type check")
_UNCHECKED = ("not checked", "skipped")


def parse(text: str) -> dict[str, Counter]:
    """{module: Counter(status -> count)} from `mutmut results --all true` output."""
    by_module: dict[str, Counter] = defaultdict(Counter)
    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            by_module[match["name"]][match["status"].strip()] += 1
    return dict(by_module)


def score(counts: Counter) -> float:
    checked = sum(n for status, n in counts.items() if status not in _UNCHECKED)
    return sum(counts[s] for s in _KILLED) / checked if checked else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mutmut", default=str(Path(sys.executable).with_name("mutmut")), help="mutmut executable"
    )
    parser.add_argument("--survivors", action="store_true", help="also list the surviving mutants")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args(argv)
    proc = subprocess.run([args.mutmut, "results", "--all", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"mutation_scores: `mutmut results` failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    by_module = parse(proc.stdout)
    if not by_module:
        print("mutation_scores: no mutant results; run `mutmut run` first (make mutation)", file=sys.stderr)
        return 1
    table = [
        "| module | mutants | killed | survived | no tests | timeout | score |",
        "|---|---|---|---|---|---|---|",
    ]
    for module, counts in sorted(by_module.items()):
        total = sum(counts.values())
        table.append(
            f"| {module} | {total} | {counts['killed']} | {counts['survived']} | {counts['no tests']} "
            f"| {counts['timeout']} | {100 * score(counts):.1f}% |"
        )
    print("\n".join(table))
    if args.survivors:
        for line in proc.stdout.splitlines():
            if line.strip().endswith(": survived"):
                print("  survived:", line.strip().rsplit(":", 1)[0])
    scores = " ".join(f"{m.rsplit('.', 1)[-1]}={100 * score(c):.1f}" for m, c in sorted(by_module.items()))
    print(f"RESULT mutation {scores}")
    if args.write_docs:
        text = [
            "## Mutation scores (`make mutation`, `benchmarks/mutation_scores.py`)",
            "",
            f"`{benchdocs.command(argv)}` after `mutmut run` ([tool.mutmut] in pyproject.toml): the share of",
            "mutants of each module that the tests catch.",
            "",
            *table,
            "",
            f"`RESULT mutation {scores}`. Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("mutation", "\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
