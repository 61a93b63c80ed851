"""Jobs (``POST /jobs``): long work queued, run on workers of its own, with progress.

No web imports. The queue is huey's (``app.jobs.queue``: ``SqliteHuey`` beside the
embedded store, ``RedisHuey`` on the store's Redis); each server process runs a huey
consumer with ``job_workers`` threads, and each thread hands its job to a pebble
process of the job pool (``app.jobs.service``), which has its own time limit and memory
cap and can be killed (cancel, time limit). A job's status, progress and result live in
the shared store (``app.store``) under ``job:<id>`` keys (``app.jobs.records``), so any
replica answers for any job.
"""
