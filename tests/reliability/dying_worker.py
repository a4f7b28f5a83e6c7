"""A worker function that ends its process abruptly, as a kill or an out-of-memory would (importable by
spawned worker processes, which is why it lives in a module of its own)."""

import os


def die(batch, *args):
    os._exit(137)
