"""The batcher, buffer and carry-forward as they were before rows became compact (issue 14),
and the repartition record codec before it was made cheaper (internal_format.py).

Kept only as test oracles (tests/unit/test_compact_buffer.py,
tests/unit/test_internal_format_oracle.py): the compact buffer must write byte-identical
files for the same events, the codec byte-identical records. Not imported by the service.
"""
