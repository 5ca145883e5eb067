"""Release check: every member's wheel, built without workspace sources, installs alone.

    uv run tools/check_release.py [--tests]

uv's lock does not check version ranges between members and cannot stop a member importing
what only a sibling declares. This builds ALL wheels first (``--no-sources``), then installs
each member into its own fresh environment from those wheels (siblings from the wheels, not
the workspace) and imports it; with ``--tests`` it also runs each member's tests there.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from release import build, install_alone_and_test, workspace_members


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tests", action="store_true", help="also run each member's tests")
    args = p.parse_args()
    members = workspace_members()
    if not members:
        print("check_release: the workspace has no members under packages/ yet; nothing to check")
        return
    with tempfile.TemporaryDirectory(prefix="arctic-dist-") as tmp:
        dist = Path(tmp)
        wheels = {m.name: build(m, dist) for m in members}
        for m in members:
            install_alone_and_test(m, wheels[m.name], dist, run_tests=args.tests)
    print(
        f"check_release: {len(members)} member(s) built and installed alone: "
        + ", ".join(f"{m.name} {m.version}" for m in members)
    )


if __name__ == "__main__":
    main()
