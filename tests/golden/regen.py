"""Regenerate golden/<case>/expected.* (run with `make golden`, then review the diff)."""

from __future__ import annotations

import sys

from tests.golden.cases import cases, outputs, run_case


def main() -> int:
    changed = 0
    for case in cases():
        for output in outputs():
            path = case.expected(output)
            text = run_case(case, output)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed += 1
                print(f"updated {path.relative_to(path.parents[2])}")
    print(f"{changed} golden file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
