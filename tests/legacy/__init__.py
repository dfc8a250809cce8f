"""The batcher, buffer and carry-forward as they were before rows became compact (issue 14).

Kept only as a test oracle (tests/unit/test_compact_buffer.py): the compact buffer must
write byte-identical files for the same events. Not imported by the service.
"""
