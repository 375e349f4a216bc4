"""Helpers for testing secmod and its modules: fixtures, a fake clock, fake providers."""
