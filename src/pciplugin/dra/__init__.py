"""The kubelet DRA plugin: ``DRAPlugin`` v1 on a unix socket, and its plugin registration."""
