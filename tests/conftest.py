"""Shared fixtures. Servers started here bind 127.0.0.1 only; tests never touch the internet."""

pytest_plugins = ["tests.fixtures_servers"]
