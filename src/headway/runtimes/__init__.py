"""Runtimes: the long-running homes of the engine (the Kubernetes controller, the embedded single-machine mode).

A runtime owns processes, sockets and timers; it may import any layer below it, and nothing below imports it.
"""
