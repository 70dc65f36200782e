"""The wire forms of our Kubernetes objects: camelCase JSON in, domain values out."""
