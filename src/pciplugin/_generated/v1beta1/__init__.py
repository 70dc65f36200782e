"""Stubs of the kubelet device-plugin API v1beta1 (proto/v1beta1/api.proto)."""
