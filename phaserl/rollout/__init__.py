"""Rollout engines: generate G samples per prompt and return tokens, text and sampling log-probs."""
