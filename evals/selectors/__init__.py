"""Read-only queries: what pages, the API, exports and commands show, computed from the database.

Nothing here writes (services do that). `results` is the results table and its cursors, `stats` a
run's statistics and cost, `compare` two runs side by side, `export` a run as CSV or JSON Lines,
`runs` a run's retry chain and merged items, `datasets` what the upload and dataset pages list.
"""
