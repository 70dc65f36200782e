"""Test harness: a real Kubernetes control plane on loopback (see docs/testing-kube-harness.md)."""
