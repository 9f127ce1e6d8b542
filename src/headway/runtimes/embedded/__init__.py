"""Embedded mode: an app's revisions as local processes behind Headway's own weighted proxy.

The proxy (`proxy`) runs as its own OS process so that traffic keeps flowing when the controlling process dies;
it persists its routing state and reloads it at start.
"""
