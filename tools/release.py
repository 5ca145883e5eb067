"""Build one workspace member and prove it installs and passes its tests on its own.

    uv run tools/release.py arctic-suffix [--dist dist/] [--no-tests]
    uv run tools/release.py --all [--tests]          # the release check CI runs

Steps: ``uv build --package P --no-sources`` (sdist + wheel, with no workspace sources, so a
dependency on a sibling must be satisfiable by a released version or a wheel built here);
a fresh virtual environment; install of the wheel alone, siblings only from the wheels in
``--dist`` (never from the workspace); import of its module; its own tests, run against the
installed wheel, not the source tree.

``--all`` checks every member: uv's lock does not check version ranges between members and
cannot stop a member importing what only a sibling declares. It builds ALL wheels first
(``--no-sources``, into a temporary directory), then installs each member into its own fresh
environment from those wheels (siblings from the wheels, not the workspace) and imports it;
with ``--tests`` it also runs each member's tests there.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES_DIR = REPO_ROOT / "packages"
# The +cpu torch wheel lives here on this project's machines (see README).
LOCAL_WHEELS = Path("/opt/wheels")


@dataclass(frozen=True)
class Member:
    name: str
    version: str
    module: str
    path: Path
    test_requirements: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> Member:
        meta = tomllib.loads((path / "pyproject.toml").read_text())
        project = meta["project"]
        groups = meta.get("dependency-groups", {})
        module = project["name"].replace("-", "_")
        return cls(
            name=project["name"],
            version=project.get("version") or _init_version(path / "src" / module),
            module=module,
            path=path,
            test_requirements=tuple(groups.get("dev", ())),
        )


def _init_version(package_dir: Path) -> str:
    """A member's version: the `__version__` line of its __init__.py (its one source)."""
    init = package_dir / "__init__.py"
    found = re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f'{init}: no `__version__ = "..."` line')
    return found.group(1)


def workspace_members() -> list[Member]:
    if not PACKAGES_DIR.is_dir():
        return []
    return [Member.load(p.parent) for p in sorted(PACKAGES_DIR.glob("*/pyproject.toml"))]


def find_member(name: str) -> Member:
    members = {m.name: m for m in workspace_members()}
    if name not in members:
        raise SystemExit(
            f"unknown package {name!r}; workspace members: {sorted(members) or 'none'}"
        )
    return members[name]


def run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def build(member: Member, dist: Path) -> Path:
    """sdist + wheel without workspace sources; returns the wheel."""
    run(
        ["uv", "build", "--package", member.name, "--no-sources", "--out-dir", str(dist)], REPO_ROOT
    )
    wheels = sorted(dist.glob(f"{member.module}-{member.version}-*.whl"))
    sdists = sorted(dist.glob(f"{member.module}-{member.version}.tar.gz"))
    if not wheels or not sdists:
        raise SystemExit(
            f"{member.name}: build produced no wheel/sdist for {member.version} in {dist}"
        )
    return wheels[-1]


def install_alone_and_test(member: Member, wheel: Path, dist: Path, run_tests: bool) -> None:
    """Fresh venv, install the wheel (siblings only from ``dist``), import, run its tests."""
    with tempfile.TemporaryDirectory(prefix=f"release-{member.name}-") as tmp:
        venv = Path(tmp) / "venv"
        run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
        python = str(venv / "bin" / "python")
        find_links = ["--find-links", str(dist)]
        if LOCAL_WHEELS.is_dir():
            find_links += ["--find-links", str(LOCAL_WHEELS)]
        install = ["uv", "pip", "install", "--quiet", "--python", python, *find_links]
        run([*install, str(wheel), *(member.test_requirements if run_tests else ())])
        run([python, "-c", f"import {member.module}; print({member.module}.__name__, 'imports')"])
        if run_tests and (member.path / "tests").is_dir():
            # Copy the tests out of the tree so `import arctic_x` resolves to the installed
            # wheel, never to packages/*/src.
            tests = Path(tmp) / "tests"
            shutil.copytree(member.path / "tests", tests)
            code = subprocess.run(
                [
                    python,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-m",
                    "not gpu and not vllm",
                    "-c",
                    str(REPO_ROOT / "pyproject.toml"),
                    "--rootdir",
                    tmp,
                    str(tests),
                ],
                cwd=tmp,
            ).returncode
            if code not in (0, 5):  # 5: no tests collected
                raise SystemExit(f"{member.name}: tests failed against the installed wheel")


def check_all(run_tests: bool) -> None:
    """Every member's wheel, built without workspace sources, installs alone."""
    members = workspace_members()
    if not members:
        print("release --all: the workspace has no members under packages/ yet; nothing to check")
        return
    with tempfile.TemporaryDirectory(prefix="arctic-dist-") as tmp:
        dist = Path(tmp)
        wheels = {m.name: build(m, dist) for m in members}
        for m in members:
            install_alone_and_test(m, wheels[m.name], dist, run_tests=run_tests)
    print(
        f"release --all: {len(members)} member(s) built and installed alone: "
        + ", ".join(f"{m.name} {m.version}" for m in members)
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("package", nargs="?", help="workspace member, e.g. arctic-suffix")
    p.add_argument("--dist", type=Path, default=REPO_ROOT / "dist")
    p.add_argument("--no-tests", action="store_true", help="one package: skip its tests")
    p.add_argument("--all", action="store_true", help="every member (see above)")
    p.add_argument("--tests", action="store_true", help="with --all: run each member's tests")
    args = p.parse_args()
    if args.all == (args.package is not None):
        p.error("name one PACKAGE, or pass --all")
    if args.all:
        check_all(run_tests=args.tests)
        return
    if args.tests:
        p.error("--tests goes with --all (one PACKAGE runs its tests unless --no-tests)")
    member = find_member(args.package)
    args.dist.mkdir(parents=True, exist_ok=True)
    wheel = build(member, args.dist)
    install_alone_and_test(member, wheel, args.dist, run_tests=not args.no_tests)
    print(f"{member.name} {member.version}: built, installed alone, tests passed")


if __name__ == "__main__":
    main()
