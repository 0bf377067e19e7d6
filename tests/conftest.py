pytest_plugins = ["tests.fix_redis", "tests.fix_pg"]
