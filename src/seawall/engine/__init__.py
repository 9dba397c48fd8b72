"""Streams to blobs and back: the parallel backup and restore pipelines, and tree walking."""
