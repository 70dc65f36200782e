"""Stubs of the kubelet plugin-registration API (proto/pluginregistration/v1/api.proto, k8s.io/kubelet v0.37.2)."""
