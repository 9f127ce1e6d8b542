"""The names of the files through which the CLI finds a running embedded daemon in its state directory, and the
paths under the daemon's address that the CLI links to.

Kept apart from the daemon (which imports aiohttp and the whole engine) so that a CLI command reads them without
paying for those imports on every invocation.
"""

TOKEN_FILE = "token"  # noqa: S105 - a name, not a secret
"""The API token, readable by the owner only."""

ENDPOINT_FILE = "daemon.json"
"""Where a running daemon says where it listens: ``{"url", "pid"}``; the CLI finds it through this file."""

DASHBOARD = "/dashboard/"
"""Where the daemon serves the web dashboard; its actions take the instance's token."""

READ_ONLY_DASHBOARD = "/dashboard-read-only/"
"""Where the daemon serves the same dashboard with every action refused (``headway dashboard --read-only``)."""

GIT_CONFIG_FILE = "git.json"
"""What ``headway up --git`` asked the daemon to follow (owner-only: the URL may carry a token)."""

GIT_STATE_FILE = "git-sync.json"
"""The Git sync's last applied and last refused commit ids."""
