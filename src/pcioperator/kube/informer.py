"""An informer: a local cache of one kind of object, kept current by list + watch.

It lists, then watches from the list's resourceVersion (with bookmarks, so the version stays
fresh); when the server says the version is too old (410 Gone) it lists again; when the API
fails it backs off and lists again. Whatever changed, it calls ``on_change`` with the object's
name — never with the event type: reconcilers read the cache, not the event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Final

import urllib3

from pcicore.backoff import Backoff
from pcioperator.kube.api import JsonObject, KubeApi, Resource
from pcioperator.kube.errors import ApiError, GoneError

_GONE: Final = 410
log = logging.getLogger(__name__)


def _name(obj: JsonObject) -> str:
    return str(obj["metadata"]["name"])


def _version(obj: JsonObject) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


class Informer:
    """A cache of ``resource`` objects (matching the selectors), kept by list + watch."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
        watch_timeout: int = 300,
    ) -> None:
        """Watch ``resource``; ``on_change(name)`` is called for every object that changed."""
        self._api = api
        self.resource = resource
        self._selector = label_selector
        self._field_selector = field_selector
        self._on_change = on_change or (lambda _name: None)
        self._backoff = backoff or Backoff(base=0.2, cap=10.0)
        self._watch_timeout = watch_timeout
        self._lock = threading.Lock()
        self._cache: dict[str, JsonObject] = {}
        self.synced = threading.Event()
        self.relists = 0
        self._response: urllib3.BaseHTTPResponse | None = None

    def interrupt(self) -> None:
        """End a watch read now (called on shutdown, after the stop event is set)."""
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()

    def _opened(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def get(self, name: str) -> JsonObject | None:
        """The cached object called ``name``, or ``None``."""
        with self._lock:
            return self._cache.get(name)

    def objects(self) -> list[JsonObject]:
        """Every cached object."""
        with self._lock:
            return list(self._cache.values())

    def remember(self, obj: JsonObject) -> None:
        """Cache ``obj``, which this process just wrote (the API server's answer), now.

        The watch brings the same object a moment later. Until then a reader of the cache would
        see the state before its own write and, on a loaded node, write again: a second
        generation of ResourceSlices, or a create that fails as AlreadyExists. A watch event
        arriving later replaces the object as usual.
        """
        with self._lock:
            self._cache[_name(obj)] = obj

    def forget(self, name: str) -> None:
        """Drop ``name``, which this process just deleted, as `remember` keeps a write."""
        with self._lock:
            self._cache.pop(name, None)

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                version = self._relist()
                failures = 0
                self._watch(version, stop)
            except GoneError:
                log.info("%s: resourceVersion too old; listing again", self.resource.plural)
            except ApiError as err:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("%s: %s; retrying in %.1fs", self.resource.plural, err, delay)
                stop.wait(delay)

    def _relist(self) -> str:
        items, version = self._api.list_objects(
            self.resource, label_selector=self._selector, field_selector=self._field_selector
        )
        fresh = {_name(obj): obj for obj in items}
        with self._lock:
            old = self._cache
            self._cache = fresh
        self.relists += 1
        self.synced.set()
        for name in old.keys() | fresh.keys():
            before, after = old.get(name), fresh.get(name)
            if before is None or after is None or _version(before) != _version(after):
                self._on_change(name)
        return version

    def _watch(self, version: str, stop: threading.Event) -> None:
        while not stop.is_set():
            events = self._api.watch(
                self.resource,
                version,
                label_selector=self._selector,
                field_selector=self._field_selector,
                timeout_seconds=self._watch_timeout,
                stop=stop,
                on_open=self._opened,
            )
            for event in events:
                if event.type == "ERROR":
                    code = event.object.get("code")
                    message = event.object.get("message", "")
                    if code == _GONE:
                        raise GoneError(f"watch of {self.resource.plural}: {message}", status=_GONE)
                    raise ApiError(f"watch of {self.resource.plural}: {message}", status=code or 0)
                version = _version(event.object) or version
                if event.type == "BOOKMARK":
                    continue
                name = _name(event.object)
                with self._lock:
                    if event.type == "DELETED":
                        self._cache.pop(name, None)
                    else:
                        self._cache[name] = event.object
                self._on_change(name)
