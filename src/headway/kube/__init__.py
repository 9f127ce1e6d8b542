"""The Kubernetes API client: the only module that talks to the API server (lightkube underneath).

It sits below the adapters (the Kubernetes routers, platform and status store use it) and above the core, so the
runtime, the adapters and the CLI's cluster commands share one client and one translation of API errors into
`headway.core.errors`.
"""
