"""Calls to Headway's own HTTP endpoints on loopback (a proxy's admin API, the embedded daemon's API).

Plain ``urllib.request.urlopen`` honours the environment's ``http_proxy`` even for ``127.0.0.1`` unless
``no_proxy`` says otherwise: on a machine with a proxy configured every such call would go to it, and with it the
bearer token. `DIRECT` never uses a proxy; every client of our own endpoints opens through it.
"""

from __future__ import annotations

import urllib.request

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""urllib without the environment's proxies."""
