"""One composition root per process: injector modules that build the objects, and ``run``."""
