"""The Kubernetes machinery: our own thin layer over the official client.

camelCase dictionaries, ``ApiException`` and HTTP live here; the rest of pcidevices sees
`KubeApi` methods, `Informer` caches, a `WorkQueue` and its `Controller` runner, leader
election, Events and the errors in `pcioperator.kube.errors`.
"""
