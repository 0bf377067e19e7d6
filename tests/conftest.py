pytest_plugins = ["tests.fix_redis", "tests.fix_pg", "tests.fix_service", "tests.fix_grpc"]
