"""``profile-sync compiled``: build, show or remove the compiled hot path (consumer/compiled.py).

    profile-sync compiled build    # C extensions beside the sources, and the manifest
    profile-sync compiled status   # compiled, or interpreted and why (exit 1 if not compiled)
    profile-sync compiled clean    # remove them: the modules run interpreted

Building needs mypy (mypyc, in the ``compile`` extra), setuptools, a C compiler and the
interpreter's headers (Debian: gcc, python3-dev). It writes into the package's directory,
so it runs where the package is: the checkout of an editable install, or site-packages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from consumer import compiled
from consumer.compiled import GROUP, MODULES, ROOT, digest, extension_suffix, source


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("status", "build", "clean"), nargs="?", default="status")


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        build()
        problem = compiled.check()
        print(problem or f"compiled: {len(MODULES)} modules under {ROOT}")
        return 1 if problem else 0
    if args.action == "clean":
        clean()
        print(f"removed the compiled modules under {ROOT}")
        return 0
    print(compiled.State.describe())
    return 0 if compiled.State.compiled else 1


def build(root: Path = ROOT) -> None:
    """Compile ``MODULES`` and put the extensions beside their sources under ``root``.

    The compiler works on a copy of the package in a temporary directory: in
    site-packages, mypy would otherwise take every installed package beside ours for
    project code and check it too. The manifest records what was compiled (the copy).
    """
    from mypyc.build import mypycify
    from setuptools import setup

    clean(root)
    suffix = extension_suffix()
    work = Path(tempfile.mkdtemp(prefix="profile-sync-mypyc-"))
    copy = work / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.so", "_compiled.json")
    shutil.copytree(root / "consumer", copy / "consumer", ignore=skip)
    sources = {m: digest(source(m, copy)) for m in MODULES}
    # Only what mypyc needs: `make typecheck` is the strict gate. Strictness here would
    # depend on which stubs the build environment has (without types-PyYAML, yaml's
    # SafeLoader is Any, and subclassing Any is a strict error), not on the code.
    config = work / "mypy.ini"
    config.write_text("[mypy]\npython_version = 3.11\nignore_missing_imports = True\n")
    here = Path.cwd()
    os.chdir(copy)
    try:
        extensions = mypycify(
            [f"--config-file={config}", *(str(source(m, Path())) for m in MODULES)],
            opt_level="3",
            group_name=GROUP,
            target_dir=str(work / "c"),
        )
        setup(
            name="profile-sync-compiled",
            packages=[],
            py_modules=[],
            ext_modules=extensions,
            script_args=[
                "-q",
                "build_ext",
                "--inplace",
                "--build-temp",
                str(work / "o"),
                "--build-lib",
                str(work / "lib"),
            ],
        )
        os.chdir(here)
        for module in MODULES:
            built = source(module, copy).with_suffix(suffix)
            shutil.copyfile(built, source(module, root).with_suffix(suffix))
        for lib in copy.glob(f"{GROUP}__mypyc*{suffix}"):
            shutil.copyfile(lib, root / lib.name)
    finally:
        os.chdir(here)
        shutil.rmtree(work, ignore_errors=True)
    manifest = {"python": suffix, "sources": sources}
    (root / "consumer" / "_compiled.json").write_text(json.dumps(manifest, indent=1) + "\n")


def clean(root: Path = ROOT) -> None:
    (root / "consumer" / "_compiled.json").unlink(missing_ok=True)
    for module in MODULES:
        source(module, root).with_suffix(extension_suffix()).unlink(missing_ok=True)
    for lib in root.glob(f"{GROUP}__mypyc*{extension_suffix()}"):
        lib.unlink()
