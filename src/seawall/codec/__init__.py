"""Pure transforms with no I/O: keys and AEAD, ids, chunking, compression."""
