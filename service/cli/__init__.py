"""The ``sessions`` command line: ONE entry point (``sessions = service.cli:main``; ``python -m consumers`` is
an alias) and one bootstrap for every command.

============  ==============================================================================================
exit  meaning
====  ==============================================================================================
0     done (``project --check``: healthy; ``forget-user``: also when there was nothing to erase)
1     the command ran and failed: a server unreachable or refusing (``unavailable``,
      ``read_model_unavailable``), something not found (``key_not_found``), ``project --check``
      unhealthy, dead letters still failing, an unexpected error (``internal_error``: one line, no
      traceback)
2     bad usage or bad configuration, nothing done: a wrong argument (``usage_error``, ``invalid_id``,
      ``invalid_tenant``, ``retention_required``, ``not_found`` for ``dead-letters retry ID``), or a
      setting that cannot be used (``invalid_setting``, ``invalid_redis_url``,
      ``invalid_db_connection_string``, ``missing_db_connection_string``, ``partition_count_mismatch``,
      ``insecure_bind``, ``http_address_unavailable``, ``grpc_address_unavailable``,
      ``keys_file_required``, ``embedded_service``, ...)
130   interrupted (Ctrl-C); ``serve``, ``project`` and ``trim --every`` stop on SIGTERM or Ctrl-C with 0
====  ==============================================================================================

A command is a function ``handler(args, settings) -> int`` (or a coroutine of it) set on its subparser with
``set_defaults(handler=...)``; commands raise the project's errors (``events.errors``) and never print their
own failures. The consumers' commands come from ``consumers.cli.add_commands`` (dependencies go service ->
consumers, never back).
"""

from __future__ import annotations

from .main import build_parser, main, run
from .serve import serve

__all__ = ["build_parser", "main", "run", "serve"]
