"""The pure core: decode, validate, batch, carry forward, settle; no I/O."""
