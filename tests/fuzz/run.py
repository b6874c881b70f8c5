"""Run one fuzz target under atheris (libFuzzer):

    python -m tests.fuzz.run TARGET [libFuzzer flags] [corpus folders]

The application's modules are imported with coverage instrumentation, so the fuzzer learns which
inputs reach new code; str.startswith and endswith are hooked, so it also learns the prefixes
the parsers look for. atheris's regular-expression hook stays off: in atheris 3.0 it fails on
bytes patterns (cryptography compiles some) and breaks json's scanner.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]


def main() -> None:
    name, *flags = sys.argv[1:]
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["bot", "adapters", "tests.fuzz"]):
        from tests.fuzz.targets import load

        target = load(name)
    atheris.Setup([sys.argv[0], *flags], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
