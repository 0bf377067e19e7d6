"""Generate the Python modules of ``proto/sessions.proto`` with grpcio-tools.

``python -m proto.generate`` rewrites ``proto/sessions_pb2.py``, ``sessions_pb2.pyi`` and
``sessions_pb2_grpc.py`` in place; ``generate(out_dir)`` writes them under ``out_dir/proto/`` instead (the
staleness test compares the two). Compiled from the repository root, so the generated gRPC module imports
``from proto import sessions_pb2``, as the original platform's did.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["GENERATED", "PROTO_DIR", "generate"]

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent
GENERATED = ("sessions_pb2.py", "sessions_pb2.pyi", "sessions_pb2_grpc.py")


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Compile the .proto into ``out_dir/proto/``; returns the files written."""
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    (out_dir / "proto").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "sessions.proto"),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on proto/sessions.proto")
    return [out_dir / "proto" / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT), file=sys.stderr)
