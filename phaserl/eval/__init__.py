"""Evaluation: benchmark loaders, official-compatible scorers, the eval runner and its reports.

Entry points (the CLI wires these): `score.score_command` (phaserl score), `runner.eval_command`
(phaserl eval), `runner.evaluate_examples` (periodic evaluation inside training).
"""
