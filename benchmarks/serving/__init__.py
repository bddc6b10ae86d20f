"""Serving: the HTTP API under concurrent load, and fuzzed from its OpenAPI description."""
