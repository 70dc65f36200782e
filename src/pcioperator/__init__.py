"""Adapters for the node agent: sysfs, the host, the Kubernetes API, and the agent's loops."""
