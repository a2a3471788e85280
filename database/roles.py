"""The database roles the API server connects as (the pipeline and migrations connect as the owner)."""

from __future__ import annotations

# The API's read-only role: created by migration 0003 (or the embedded server, or the stack's init script);
# what it may read is migration 0004's READER_VIEWS and READER_COLUMNS, nothing else.
READER_ROLE = "movierec_reader"
# The API's only writer: INSERT into ``dismissals`` (migration 0007), nothing else; created like the reader.
FEEDBACK_ROLE = "movierec_feedback"
