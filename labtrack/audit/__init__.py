"""Audit trail verification (R-AUD-3) and, later, checkpoints and the offline verifier."""
