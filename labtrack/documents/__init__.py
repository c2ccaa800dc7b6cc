"""Printed documents: container labels and the batch record (SPEC §8). Pure rendering from views."""
