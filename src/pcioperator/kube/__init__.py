"""The Kubernetes adapter: our own thin layer over the official client.

camelCase dictionaries, ``ApiException`` and HTTP live here; the rest of pcidevices sees
`KubeApi` methods, `Informer` caches and the errors in `pcioperator.kube.errors`.
"""
