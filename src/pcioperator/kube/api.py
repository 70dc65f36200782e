"""`KubeApi`: the few REST calls the agent makes, on the official client's ``ApiClient``.

Objects go in and out as plain JSON dictionaries (the wire form); errors come out as
`pcioperator.kube.errors` types. Every request is counted by verb, so metrics and tests can see
what the agent costs the API server.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote

import attrs
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from pcioperator.kube.errors import ApiError, TemporaryApiError, from_status

JsonObject = dict[str, Any]

_MERGE_PATCH: Final = "application/merge-patch+json"
_JSON: Final = "application/json"
WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete"})


@attrs.frozen
class Resource:
    """A kind of object the agent reads or writes.

    Attributes:
        group: API group (``""`` for the core group).
        version: API version.
        plural: Resource name in URLs.
        kind: Kind of its objects.
        namespaced: Whether its objects live in namespaces.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = False

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path of the collection, or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            if namespace is None:
                raise ValueError(f"{self.plural} are namespaced: a namespace is needed")
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return base if name is None else f"{base}/{quote(name, safe='')}"


PCIDEVICES: Final = Resource("devices.harvesterhci.io", "v1beta1", "pcidevices", "PCIDevice")
PCIDEVICECLAIMS: Final = Resource(
    "devices.harvesterhci.io", "v1beta1", "pcideviceclaims", "PCIDeviceClaim"
)
SRIOVNETWORKDEVICES: Final = Resource(
    "devices.harvesterhci.io", "v1beta1", "sriovnetworkdevices", "SRIOVNetworkDevice"
)
USBDEVICES: Final = Resource("devices.harvesterhci.io", "v1beta1", "usbdevices", "USBDevice")
USBDEVICECLAIMS: Final = Resource(
    "devices.harvesterhci.io", "v1beta1", "usbdeviceclaims", "USBDeviceClaim"
)
NODES: Final = Resource("", "v1", "nodes", "Node")
EVENTS: Final = Resource("", "v1", "events", "Event", namespaced=True)
LEASES: Final = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
RESOURCESLICES: Final = Resource("resource.k8s.io", "v1", "resourceslices", "ResourceSlice")


@attrs.frozen
class WatchEvent:
    """One line of a watch stream.

    Attributes:
        type: ``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``.
        object: The object (a ``metav1.Status`` for ``ERROR``).
    """

    type: str
    object: JsonObject


class KubeApi:
    """REST calls against one API server, counted by verb."""

    def __init__(
        self, client: ApiClient, on_request: Callable[[str, str], None] | None = None
    ) -> None:
        """Talk through ``client``; ``on_request(verb, plural)`` is told of every request."""
        self._client = client
        self._on_request = on_request
        self._lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()

    # --- reads ---------------------------------------------------------------------------

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> JsonObject:
        """One object. Raises `NotFoundError` if there is none."""
        return self._call("get", resource, "GET", resource.path(namespace, name))

    def list_objects(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        namespace: str | None = None,
    ) -> tuple[list[JsonObject], str]:
        """Every object (matching the selectors) and the list's resourceVersion."""
        query = _selectors(label_selector, field_selector)
        body = self._call("list", resource, "GET", resource.path(namespace), query=query)
        return (list(body.get("items") or []), str(body["metadata"]["resourceVersion"]))

    def watch(
        self,
        resource: Resource,
        resource_version: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        stop: threading.Event | None = None,
        on_open: Callable[[urllib3.BaseHTTPResponse], None] | None = None,
    ) -> Iterator[WatchEvent]:
        """Changes after ``resource_version`` until the server ends the watch or ``stop`` is set."""
        query: list[tuple[str, str | int]] = [
            ("watch", "1"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        query.extend(_selectors(label_selector, field_selector))
        response = self._raw(
            "watch",
            resource,
            "GET",
            resource.path(),
            query,
            None,
            None,
            timeout=(10, timeout_seconds + 30),
        )
        if on_open is not None:
            on_open(response)  # lets another thread end a read that would block
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                if stop is not None and stop.is_set():
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield WatchEvent(type=event["type"], object=event["object"])
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise TemporaryApiError(f"watch of {resource.plural} broke: {err}") from err
        finally:
            response.release_conn()

    # --- writes --------------------------------------------------------------------------

    def create(
        self, resource: Resource, body: JsonObject, namespace: str | None = None
    ) -> JsonObject:
        """Create an object; its status is ignored by resources with a status subresource."""
        return self._call("create", resource, "POST", resource.path(namespace), body=body)

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: JsonObject,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JsonObject:
        """Merge-patch an object (or its ``status``); a ``resourceVersion`` in it is checked."""
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return self._call("patch", resource, "PATCH", path, body=patch, content_type=_MERGE_PATCH)

    def update(
        self, resource: Resource, name: str, body: JsonObject, namespace: str | None = None
    ) -> JsonObject:
        """Replace an object (PUT); a ``resourceVersion`` in ``body`` is checked (409: stale)."""
        return self._call("update", resource, "PUT", resource.path(namespace, name), body=body)

    def delete(self, resource: Resource, name: str, namespace: str | None = None) -> None:
        """Delete an object. Raises `NotFoundError` if it is already gone."""
        self._call("delete", resource, "DELETE", resource.path(namespace, name))

    # --- plumbing ------------------------------------------------------------------------

    def _call(
        self,
        verb: str,
        resource: Resource,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = _JSON,
    ) -> JsonObject:
        response = self._raw(verb, resource, method, path, query or [], body, content_type)
        try:
            data = response.data
        finally:
            response.release_conn()
        return json.loads(data) if data else {}

    def _raw(  # noqa: PLR0917 - private plumbing shared by every verb
        self,
        verb: str,
        resource: Resource,
        method: str,
        path: str,
        query: list[tuple[str, Any]],
        body: Mapping[str, Any] | None,
        content_type: str | None,
        *,
        timeout: tuple[float, float] = (10, 30),
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; return the unread response of a 2xx, else raise an `ApiError`."""
        with self._lock:
            self.requests[verb] += 1
        if self._on_request is not None:
            self._on_request(verb, resource.plural)
        headers = {"Accept": _JSON}
        if content_type is not None and body is not None:
            headers["Content-Type"] = content_type
        what = f"{verb} {resource.plural} ({path})"
        try:
            _, url, headers, payload, post = self._client.param_serialize(
                method,
                path,
                query_params=query,
                header_params=headers,
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            answer = self._client.call_api(
                method,
                url,
                header_params=headers,
                body=payload,
                post_params=post,
                _request_timeout=timeout,
            )
        except ApiException as err:
            raise TemporaryApiError(f"{what}: no answer from the API server: {err.reason}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise TemporaryApiError(f"{what}: no answer from the API server: {err}") from err
        response: urllib3.BaseHTTPResponse = answer.response
        if not 200 <= answer.status < 300:  # noqa: PLR2004 - the 2xx range
            try:
                data = response.data
            finally:
                response.release_conn()
            raise from_status(answer.status, data, what)
        return response


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query = [("labelSelector", label_selector)] if label_selector else []
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


def is_write(verb: str) -> bool:
    """Whether ``verb`` changes state on the server."""
    return verb in WRITE_VERBS


__all__ = ["ApiError", "JsonObject", "KubeApi", "Resource", "WatchEvent", "is_write"]
