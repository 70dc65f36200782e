"""Stubs of the kubelet DRA health API (proto/dra-health/v1/api.proto, k8s.io/kubelet v0.37.2)."""
