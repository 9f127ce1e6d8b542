"""Headway: progressive delivery (canary, blue/green) with one pure engine for Kubernetes and for one machine."""

__version__ = "0.1.0"
