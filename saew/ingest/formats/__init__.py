"""Readers of outside SAE checkpoint formats (one module per format) and of raw files.

Every reader returns a :class:`ingest.formats.raw.Loaded`; none writes to the lake.
Files are read once (``raw.read_bytes`` hashes while reading); ``.pt`` files are opened
only with ``torch.load(weights_only=True)``, so a checkpoint never runs code.
"""
