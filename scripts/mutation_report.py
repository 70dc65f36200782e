"""Summarise ``mutmut results --all true`` (read on stdin) as a Markdown table per module.

Each input line is ``    <module>.<mangled function>__mutmut_<n>: <status>``. The table has
one row per module and the total: mutants, killed (a test failed or timed out), survived, no
tests (no fast test runs the function), not checked (the run stopped first), and the share of
tested mutants killed.
"""

import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"\s*(?P<name>[\w.]+)__mutmut_\d+: (?P<status>.+)")


def module_of(name: str) -> str:
    """``pcicore.claim`` from ``pcicore.claim.xǁClaimMachineǁstep`` or ``pcicore.claim.x_f``."""
    parts = name.split(".")
    return ".".join(parts[:-1])


def main() -> None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for line in sys.stdin:
        match = LINE.match(line)
        if match is None:
            continue
        status = match["status"].strip()
        counts[module_of(match["name"])][status] += 1
        if status == "survived":
            survivors.append(line.strip().rsplit(":", 1)[0])
    print("| module | mutants | killed | survived | no tests | not checked | killed / tested |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total: Counter[str] = Counter()
    for module in sorted(counts):
        total.update(counts[module])
        print(row(module, counts[module]))
    print(row("**total**", total))
    if survivors:
        print(f"\nSurvivors ({len(survivors)}); see each with `.venv/bin/mutmut show <name>`:")
        for name in survivors:
            print(f"- `{name}`")


def row(label: str, counts: Counter[str]) -> str:
    killed = counts["killed"] + counts["timeout"]
    survived = counts["survived"]
    mutants = sum(counts.values())
    untested = counts["no tests"]
    unchecked = mutants - killed - survived - untested
    tested = killed + survived
    share = f"{100 * killed / tested:.1f} %" if tested else "-"
    return f"| {label} | {mutants} | {killed} | {survived} | {untested} | {unchecked} | {share} |"


if __name__ == "__main__":
    main()
