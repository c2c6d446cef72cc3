"""An installed, non-editable copy of xrelay provides the twistd plugin and
the ``xrelay`` command, and does not shadow Twisted's own packages."""

from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_no_twisted_init_files_in_the_source_tree() -> None:
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top(module: str) -> str:
    """The importable name a distribution provides: ``zope.interface`` for the
    ``zope`` namespace (shared by several distributions), else the top package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "zope" else parts[0]


def test_install_requires_is_what_the_package_imports() -> None:
    """Every distribution xrelay imports is declared, and nothing declared is
    left unused (service-identity is used by Twisted's TLS, never imported)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = set()
    for line in config["options"]["install_requires"].splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            declared.add(_canonical(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    modules: set[str] = set()
    for path in (ROOT / "xrelay").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(_top(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(_top(node.module))
    owners = packages_distributions()
    imported = {_canonical(dist) for module in modules - set(sys.stdlib_module_names) - {"xrelay", "_typeshed"}
                for dist in owners.get(module, [module]) if _canonical(dist) != "xrelay"}
    assert imported - declared == set(), "imported but not in install_requires"
    assert declared - imported == {"service-identity"}, "declared but never imported"


@pytest.mark.slow
def test_installed_copy_finds_the_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    # No build isolation: the test must not need the network (setuptools and
    # wheel come with the test extras).
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(ROOT)],
                   check=True, timeout=300, capture_output=True)
    assert (site / "twisted" / "plugins" / "xrelay_plugin.py").is_file()
    assert not (site / "twisted" / "__init__.py").exists()
    assert (site / "xrelay" / "demo" / "sample.ts").is_file(), "package data is installed"
    assert (site / "xrelay" / "ops" / "static" / "admin.js").is_file(), "the admin page's assets too"
    for package in (ROOT / "xrelay").rglob("__init__.py"):
        relative = package.relative_to(ROOT)
        assert (site / relative).is_file(), f"{relative.parent} is installed"
    # Run from elsewhere, so that only the installed copy can be imported.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import xrelay; print(xrelay.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))
    helptext = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "xrelay" in helptext.stdout
    plugin = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "xrelay", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "--demo" in plugin.stdout and "--config" in plugin.stdout
    command = subprocess.run([str(site / "bin" / "xrelay"), "--help"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert command.returncode == 0 and "check-config" in command.stdout
