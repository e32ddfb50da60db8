"""Sieve package."""
