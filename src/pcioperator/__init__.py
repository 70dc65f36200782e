"""Kubernetes adapters: the API machinery, our objects' wire forms, the controllers, the webhook.

``kube`` talks to the API server (client, informer, work queue, runner, leader election,
Events); ``wire`` converts our objects; ``controllers`` keep the cluster in step using the pure
decisions of `pcicore`; ``webhook`` serves admission reviews; ``agent`` runs a node's loops.
"""
