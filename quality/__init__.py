"""Great Expectations suites and their runner, with no Dagster inside."""
