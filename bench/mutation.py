"""Mutation testing with mutmut 3, one group of modules at a time, each against its fast tests.

The groups are ``[tool.conclave.mutation]`` in pyproject.toml, mutmut's shared settings are
``[tool.mutmut]``. Each group runs in a throwaway copy of the work tree (tracked and untracked,
not ignored, files as they are now; ``--rev`` takes a commit instead), with only_mutate and the
test selection set to the group's, so the work tree and its ``mutants/`` are never touched and
two groups never share cached results. Prints killed, survived, timeout and uncovered per group
and the diff of every mutant not killed; survivors recorded in bench/mutation-equivalent.md (a
mutant that changes no behaviour) are shown as such and do not count.

    bench/mutation.sh [--max-children N] [--time-box SECONDS] [--keep] [--rev REV] [GROUP ...]

Exit status 1 if any group has a mutant that is neither killed nor recorded as equivalent.
Slow (minutes per group): not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "bench" / "mutation-equivalent.md"
# A row of the equivalents table: | `mutant id` | `the line it puts in` | why |, with any | in
# the line written \| as Markdown tables need.
ROW = re.compile(r"^\|\s*`(?P<id>[^`]+)`\s*\|\s*`(?P<diff>[^`]*)`\s*\|")
NUMBER = re.compile(r"__mutmut_\d+$")


@dataclass(frozen=True)
class Group:
    name: str
    mutate: list[str]
    tests: list[str]


@dataclass
class Outcome:
    group: Group
    status: dict[str, str] = field(default_factory=dict)  # mutant id -> mutmut's status
    diffs: dict[str, str] = field(default_factory=dict)  # mutant id -> "- old / + new" lines
    equivalent: set[str] = field(default_factory=set)
    error: str | None = None
    timed_out: bool = False

    @property
    def unkilled(self) -> list[str]:
        """Checked and not killed (survived, not covered, timed out...), nor equivalent."""
        return sorted(
            m
            for m, s in self.status.items()
            if s not in ("killed", "not checked") and m not in self.equivalent
        )


def load_groups() -> list[Group]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    groups = data["tool"]["conclave"]["mutation"]
    return [Group(name, list(g["mutate"]), list(g["tests"])) for name, g in groups.items()]


def copy_tree(dest: Path, rev: str | None) -> None:
    if rev is not None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def configure(copy: Path, group: Group) -> list[str]:
    """Narrow the copy's [tool.mutmut] to the group; the missing test paths, left out."""
    missing = [t for t in group.tests if not (copy / t.split("::")[0]).exists()]
    tests = [t for t in group.tests if t not in missing]
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    narrowed = (
        "[tool.mutmut]\n"
        f"only_mutate = {json.dumps(group.mutate)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
    )
    if text.count("[tool.mutmut]\n") != 1:
        raise SystemExit("pyproject.toml needs exactly one [tool.mutmut] table")
    pyproject.write_text(text.replace("[tool.mutmut]\n", narrowed), "utf-8")
    return missing


def mutmut(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )


def run_group(group: Group, args: argparse.Namespace, equivalents: dict[str, str]) -> Outcome:
    outcome = Outcome(group)
    copy = Path(tempfile.mkdtemp(prefix=f"conclave-mutation-{group.name}-"))
    try:
        copy_tree(copy, args.rev)
        for path in configure(copy, group):
            print(f"  {group.name}: no {path} in this tree; left out of the test selection")
        log = copy / "mutmut.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
                cwd=copy,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=args.time_box)
            except subprocess.TimeoutExpired:
                outcome.timed_out = True
                os.killpg(proc.pid, signal.SIGINT)  # mutmut stops its workers and saves
                try:
                    code = proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    code = proc.wait()
        if code != 0 and not outcome.timed_out:
            tail = log.read_text("utf-8", errors="replace")[-2000:]
            outcome.error = f"mutmut run exited {code}:\n{tail}"
        listed = mutmut(copy, "results", "--all", "true").stdout
        for line in listed.splitlines():
            name, sep, status = line.strip().rpartition(": ")
            if sep:
                outcome.status[name] = status
        shown = [m for m, s in outcome.status.items() if s not in ("killed", "not checked")]
        for name, diff in diffs(copy, shown).items():
            outcome.diffs[name] = changed_lines(diff)
            if is_equivalent(name, outcome.diffs[name], equivalents):
                outcome.equivalent.add(name)
        if args.keep:
            print(f"  {group.name}: kept {copy} (mutmut browse / show / apply work there)")
    finally:
        if not args.keep:
            shutil.rmtree(copy, ignore_errors=True)
    return outcome


# `mutmut show NAME` for many mutants in one process (one process per mutant takes a second
# each); mutmut's own functions behind that command, so it falls back to the command.
BULK_SHOW = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
names = json.load(sys.stdin)
json.dump({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in names}, sys.stdout)
"""


def diffs(copy: Path, names: list[str]) -> dict[str, str]:
    bulk = subprocess.run(
        [sys.executable, "-c", BULK_SHOW],
        cwd=copy,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=False,
    )
    if bulk.returncode == 0:
        shown: dict[str, str] = json.loads(bulk.stdout)
        return shown
    return {name: mutmut(copy, "show", name).stdout for name in names}


def changed_lines(diff: str) -> str:
    lines = diff.splitlines()
    return "\n".join(
        line
        for line in lines
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    )


def load_equivalents() -> dict[str, str]:
    """Mutant id -> its '+' line, from the table in bench/mutation-equivalent.md."""
    if not EQUIVALENT.exists():
        return {}
    rows = (ROW.match(line) for line in EQUIVALENT.read_text("utf-8").splitlines())
    return {m["id"]: m["diff"].replace("\\|", "|").strip() for m in rows if m is not None}


def is_equivalent(name: str, diff: str, equivalents: dict[str, str]) -> bool:
    """Recorded by id with the same change, or (the ids of a function's mutants are renumbered
    when it changes) by the same function and the same change under another number."""
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+")]
    function = NUMBER.sub("", name)
    return any(
        (known == name or NUMBER.sub("", known) == function) and line in added
        for known, line in equivalents.items()
    )


def report(outcome: Outcome) -> None:
    counts = Counter(outcome.status.values())
    g = outcome.group
    head = (
        f"{g.name} ({', '.join(g.mutate)}): {len(outcome.status)} mutants, "
        f"{counts['killed']} killed, {counts['survived']} survived, {counts['timeout']} timeout, "
        f"{counts['no tests']} not covered by the group's tests, "
        f"{len(outcome.equivalent)} recorded as equivalent"
    )
    other = {
        s: n for s, n in counts.items() if s not in ("killed", "survived", "timeout", "no tests")
    }
    if other:
        head += ", " + ", ".join(f"{n} {s}" for s, n in sorted(other.items()))
    print(head)
    if outcome.timed_out:
        print("  time box reached: the counts are for the mutants checked by then")
    if outcome.error:
        print("  " + outcome.error.replace("\n", "\n  "))
    for name in outcome.unkilled:
        print(f"  {outcome.status[name]}: {name}")
        for line in outcome.diffs.get(name, "").splitlines():
            print(f"      {line}")


def main() -> int:
    groups = load_groups()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP", help=", ".join(g.name for g in groups)
    )
    parser.add_argument("--max-children", type=int, default=2, help="mutmut workers (default 2)")
    parser.add_argument("--time-box", type=float, default=None, help="seconds per group")
    parser.add_argument("--keep", action="store_true", help="keep each group's copy")
    parser.add_argument("--rev", default=None, help="mutate this commit, not the work tree")
    args = parser.parse_args()
    unknown = set(args.groups) - {g.name for g in groups}
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    chosen = [g for g in groups if not args.groups or g.name in args.groups]
    equivalents = load_equivalents()
    failed = False
    for group in chosen:
        print(f"== {group.name}: mutating {', '.join(group.mutate)}", flush=True)
        outcome = run_group(group, args, equivalents)
        report(outcome)
        unchecked = "not checked" in outcome.status.values()
        failed = failed or bool(outcome.unkilled) or unchecked or outcome.error is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
