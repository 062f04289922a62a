"""Write tokens: who may change a device through the bridge, and by what name.

A write-token file (``--write-token-file``) holds one ``NAME TOKEN`` pair a
line; blank lines and ``#`` comments are allowed::

    # person or tool   token
    alice              3f9c0a...d1
    artiq-cavity       b71e44...0a

The name is what the audit trail records; each token is at least
:data:`~.config.TOKEN_MIN` printable characters.  A write sends its token
as ``Authorization: Bearer TOKEN``, nowhere else.

:class:`WriteTokens` checks a presented token (in constant time against
every token) and :class:`Throttle` rate-limits clients that keep presenting
bad ones.
"""

import collections
import hmac
import re
import time
from typing import Callable, Optional, Sequence

__all__ = ["WriteTokens", "Throttle", "read_token_file", "parse_tokens", "TOKEN_NAME"]

#: What a token's name may be (it appears in the audit trail).
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def parse_tokens(text: str, where: str, check_token: Callable[[str], str]) -> tuple:
    """``((name, token), ...)`` of a token file's ``text``; ValueError naming
    ``where`` and the line when a line is not ``NAME TOKEN``, a name is
    repeated, a token is repeated or ``check_token`` refuses one."""
    pairs: list = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        at = "{} line {}".format(where, number)
        if len(words) != 2:
            raise ValueError("{}: expected 'NAME TOKEN', got {} word(s)".format(at, len(words)))
        name, token = words
        if not TOKEN_NAME.match(name):
            raise ValueError("{}: the name must match {}".format(at, TOKEN_NAME.pattern))
        try:
            check_token(token)
        except ValueError as e:
            raise ValueError("{} ({}): {}".format(at, name, e)) from None
        if any(name == n for n, _ in pairs):
            raise ValueError("{}: the name {} is given twice".format(at, name))
        if any(token == t for _, t in pairs):
            raise ValueError("{} ({}): this token is already {}'s; give each its own".format(
                at, name, next(n for n, t in pairs if t == token)))
        pairs.append((name, token))
    if not pairs:
        raise ValueError("{}: no 'NAME TOKEN' line".format(where))
    return tuple(pairs)


def read_token_file(path: str, check_token: Callable[[str], str]) -> tuple:
    """The ``(name, token)`` pairs of the file at ``path`` (see
    :func:`parse_tokens`); ValueError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot read the write-token file {}: {}".format(
            path, getattr(e, "strerror", None) or e)) from None
    return parse_tokens(text, path, check_token)


class WriteTokens:
    """The bridge's write tokens.

    :param pairs: ``(name, token)`` pairs; none means the bridge is read-only.
    """

    def __init__(self, pairs: Sequence[tuple] = ()):
        self._pairs = [(name, token.encode()) for name, token in pairs]

    @property
    def configured(self) -> bool:
        """True when writes are possible at all."""
        return bool(self._pairs)

    def name_of(self, token: bytes) -> Optional[str]:
        """The name of ``token``, None when it is none of them.  Every token
        is compared, each in constant time, so the time taken tells nothing."""
        found = None
        for name, known in self._pairs:
            if hmac.compare_digest(token, known):
                found = name
        return found


class Throttle:
    """At most ``limit`` failures per client address in ``window_s`` seconds.

    :meth:`blocked` tells how many seconds a client must still wait (0 when
    it may try); :meth:`failed` records a failure.  Memory is bounded by
    ``max_clients``: the address seen longest ago is forgotten first.
    """

    def __init__(self, limit: int = 5, window_s: float = 60.0, max_clients: int = 4096,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: "collections.OrderedDict[str, collections.deque]" = \
            collections.OrderedDict()

    def _recent(self, client: str) -> collections.deque:
        times = self._failures.get(client)
        if times is None:
            return collections.deque()
        horizon = self._clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        times = self._recent(client)
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - self._clock())

    def failed(self, client: str) -> None:
        """Record a bad token from ``client``."""
        times = self._recent(client)
        times.append(self._clock())
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
