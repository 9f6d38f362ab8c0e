"""A small router over raw paths: exact paths by dict lookup, the rest by a few regexes.

Paths known in advance to match a regex route (the prediction paths of the served
models) can be resolved once up front (`learn`), so the hot paths cost one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from modelserver import errors
from modelserver.asgi import Response

Params = Mapping[str, str | None]
# ASGI request headers: (lower-case name, value) pairs.
Headers = Sequence[tuple[bytes, bytes]]
# (path parameters, request body, request headers) -> response.
Handler = Callable[[Params, bytes, Headers], Awaitable[Response]]
NO_PARAMS: Params = {}


@dataclass(frozen=True)
class Route:
    path: str  # an exact path, or a regex when `pattern` is set
    protocol: str
    handlers: Mapping[str, Handler]  # HTTP method -> handler
    pattern: re.Pattern[str] | None = None


def exact(path: str, protocol: str, handlers: Mapping[str, Handler]) -> Route:
    return Route(path, protocol, handlers)


def regex(pattern: str, protocol: str, handlers: Mapping[str, Handler]) -> Route:
    return Route(pattern, protocol, handlers, re.compile(pattern))


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.exact = {route.path: route for route in routes if route.pattern is None}
        self.patterns = [route for route in routes if route.pattern is not None]
        self.learned: dict[str, tuple[Route, Params]] = {}

    def learn(self, paths: Iterable[str]) -> None:
        """Resolve these paths now, so `match` finds them by one dict lookup (same result)."""
        for path in paths:
            found = self.find(path)
            if found is not None and path not in self.exact:
                route, params = found
                self.learned[path] = (route, MappingProxyType(dict(params)))  # shared: read-only

    def find(self, path: str) -> tuple[Route, Params] | None:
        route = self.exact.get(path)
        if route is not None:
            return route, NO_PARAMS
        for candidate in self.patterns:
            assert candidate.pattern is not None
            found = candidate.pattern.fullmatch(path)
            if found is not None:
                return candidate, found.groupdict()
        return None

    def match(self, method: str, path: str) -> tuple[Route, Params]:
        """The route for `path` and its parameters; 404 when none, 405 when the method is wrong."""
        found = self.learned.get(path) or self.find(path)
        if found is None:
            raise errors.not_found(f"Not found: {method} {path}")
        route, params = found
        if method not in route.handlers:
            raise errors.method_not_allowed(method, path, list(route.handlers))
        return route, params
