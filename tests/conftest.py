"""Suite-wide pytest configuration: plugins every layer may use."""

pytest_plugins = ["harness.fixtures"]
