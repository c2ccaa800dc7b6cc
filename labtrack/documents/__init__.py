"""Printed documents: container labels and the batch record (requirements §8). Pure rendering from views."""
