"""The append-only, hash-chained audit log: every decision and state change, provably untouched."""
