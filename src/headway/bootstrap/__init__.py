"""The composition root: the only place that builds a mode's engine and runtime from its adapters.

Both modes are built from the same table, the mode registry (`headway.engine.modes`), which admission reads too:

- `headway.bootstrap.embedded` wires embedded mode on one state directory (SQLite store, local processes, the
  built-in proxy, the in-process analysis executor, gates and notifications) into a running `Embedded`;
- `headway.bootstrap.kubernetes` builds the engine of each admitted Rollout (its routers, the cluster platform,
  runs and status store) and hands that factory to the controller, which imports no adapter itself;
- ``python -m headway.bootstrap`` (`headway.bootstrap.__main__`) is the embedded daemon's process.

Nothing else lives here: what the modes do at run time is in `headway.runtimes`, what they can do in the registry.
"""
