"""What CI installs is what was tested: every dependency is held in constraints.txt, the build backend is
pinned, and the generated JSON Schema does not depend on how a msgspec release renders docstrings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from events.jsonschema import _prose

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_dependency_is_locked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    missing = sorted({_name(r) for r in wanted} - set(_locked()))
    assert not missing, f"add to constraints.txt (pip freeze of the tested venv): {missing}"


def test_every_dependency_range_is_closed_above() -> None:
    """A user's install (without the constraints) cannot jump to a release no one has tested the next major
    of: every range has an upper bound (or is an exact pin)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    open_ended = [r for r in wanted if "<" not in r and "==" not in r]
    assert not open_ended, f"give these an upper bound in pyproject.toml: {open_ended}"


def test_the_build_backend_is_pinned() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert all("==" in r for r in build), build


def test_ci_and_readme_install_from_the_lock() -> None:
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
    assert "-c constraints.txt" in (ROOT / "README.md").read_text()


def test_schema_prose_is_independent_of_docstring_indentation() -> None:
    indented = (
        "First line of a docstring that goes on\n    to a second, indented line.\n\n    Another paragraph."
    )
    dedented = "First line of a docstring that goes on\nto a second, indented line.\n\nAnother paragraph."
    expected = "First line of a docstring that goes on to a second, indented line.\n\nAnother paragraph."
    assert _prose(indented) == _prose(dedented) == expected


def test_every_package_is_installed_and_type_checked() -> None:
    # A package missing from the list works from the source tree and is absent from the wheel (the image).
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    listed = set(tool["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.glob("*/**/__init__.py")
        if init.parent.relative_to(ROOT).parts[0] in {p.split(".")[0] for p in listed}
    }
    assert sorted(on_disk - listed) == []
    assert {"sessions_sdk", "genai_platform", "service"} <= set(tool["mypy"]["packages"])
