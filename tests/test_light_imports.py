"""The clients load nothing of the server: ``import sessions_sdk`` (or its alias ``service.sdk``) loads no
driver, no web framework, no cryptography and no gRPC; ``import genai_platform`` (the gRPC facade) loads gRPC
and protobuf and nothing of the server. Each import runs in a fresh interpreter, since this one has loaded
everything already; a failure names the module and the chain of imports that pulled it in."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SERVER = ["redis", "psycopg", "psycopg_pool", "cryptography", "prometheus_client", "litestar", "uvicorn"]

# Runs in the fresh interpreter: a meta path finder notes, for each forbidden module, the modules whose
# top level was executing when it was first asked for (the import chain), then the target is imported.
_PROBE = r"""
import json, sys

FORBIDDEN = set(json.loads(sys.argv[2]))
chains = {}

def _top(name):
    return name.partition(".")[0]

class Spy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if _top(name) in FORBIDDEN and _top(name) not in chains:
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_name == "<module>":
                    module = frame.f_globals.get("__name__")
                    if module and module != "__main__" and (not chain or chain[-1] != module):
                        chain.append(module)
                frame = frame.f_back
            chains[_top(name)] = list(reversed(chain)) + [name]
        return None

sys.meta_path.insert(0, Spy)
__import__(sys.argv[1])
loaded = sorted(m for m in FORBIDDEN if m in sys.modules)
print(json.dumps({"loaded": loaded, "chains": {m: chains.get(m, []) for m in loaded},
                  "modules": sorted(sys.modules)}))
"""


def _import_fresh(module: str, forbidden: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, module, json.dumps(forbidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"import {module} failed:\n{out.stderr}"
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _explain(module: str, result: dict[str, object]) -> str:
    chains = result["chains"]
    assert isinstance(chains, dict)
    lines = [f"import {module} loaded {', '.join(chains)}:"]
    lines += [f"  {name}: {' -> '.join(chain)}" for name, chain in chains.items()]
    return "\n".join(lines)


@pytest.mark.parametrize("module", ["sessions_sdk", "service.sdk"])
def test_the_sdk_loads_nothing_of_the_server(module: str) -> None:
    result = _import_fresh(module, [*SERVER, "grpc"])
    assert result["loaded"] == [], _explain(module, result)
    assert "httpx" in result["modules"] and "msgspec" in result["modules"]  # the probe did import it


def test_the_grpc_facade_loads_grpc_and_protobuf_and_nothing_of_the_server() -> None:
    result = _import_fresh("genai_platform", [*SERVER, "grpc", "google"])
    assert result["loaded"] == ["google", "grpc"], _explain("genai_platform", result)
    assert "google.protobuf" in result["modules"]


def test_the_probe_sees_a_server_import() -> None:
    # The check itself can fail: the application does load the server, and the chain says through what.
    result = _import_fresh("service.app", SERVER)
    assert "redis" in result["loaded"]
    chains = result["chains"]
    assert isinstance(chains, dict) and chains["redis"][0] == "service.app"


def test_service_sdk_is_an_alias_of_sessions_sdk() -> None:
    import service.sdk
    import sessions_sdk

    for name in service.sdk.__all__:
        assert getattr(service.sdk, name) is getattr(sessions_sdk, name), name


@pytest.mark.parametrize("package", ["events", "projections", "service", "service.http"])
def test_lazy_packages_export_what_they_list(package: str) -> None:
    pkg = importlib.import_module(package)
    home = pkg._HOME
    assert sorted(pkg.__all__) == sorted(home)  # every exported name has a home, and nothing else
    for name in pkg.__all__:
        module, _, attribute = home[name].partition(":")
        defined = getattr(importlib.import_module(f"{package}.{module}"), attribute or name)
        assert getattr(pkg, name) is defined, name
        assert name in dir(pkg)
    with pytest.raises(AttributeError, match="no_such_name"):
        pkg.no_such_name  # noqa: B018
