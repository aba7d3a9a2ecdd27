"""Abuse tests: forged tokens, forged events, fuzzed records, bad settings."""
