"""The controllers: thin adapters that read the caches, ask `pcicore` what to do and write it."""
