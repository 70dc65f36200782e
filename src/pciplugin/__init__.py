"""The kubelet device plugin (v1beta1 gRPC) that advertises claimed devices to KubeVirt."""
