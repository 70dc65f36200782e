"""Stubs of the kubelet DRA plugin API (proto/dra/v1/api.proto, k8s.io/kubelet v0.37.2)."""
