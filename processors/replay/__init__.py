"""`zapstream replay`: re-decide a slice of inbound history with the current engine,
recording the decisions (`replay_decisions`, `replay_runs`) and never sending anything.

    selection.py  which records: --from/--to, --offsets, --user → offset ranges (pure)
    decide.py     the in-memory re-decision: intake (dedupe → debounce) → engine (pure)
    diff.py       original vs replayed decisions: counts and samples (pure)
    kafka_log.py  the inbound topic read directly: bounds, timestamps, bulk reads
    run.py        one replay run: resolve, read, decide, publish, report
"""
