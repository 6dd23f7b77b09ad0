"""segpipe on top: the command line and the Prefect flows (nightly, resumable batches)."""
