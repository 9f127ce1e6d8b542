"""The web dashboard: `headway.dashboard.app.create_app` over a `headway.dashboard.source.RolloutSource`."""
