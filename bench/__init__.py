"""The groupgraph benchmark (`scripts/bench`): seeded presets, a live uvicorn, scenarios over HTTP."""
