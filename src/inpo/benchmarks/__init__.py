"""Official benchmark file formats and scoring: AlpacaEval 2.0 (``alpaca_eval``), Arena-Hard v0.1
(``arena_hard``) and a command that fetches their public reference files (``download``).

The functions read and write the files the official tools read and write, so a run of this
project can be scored by ``alpaca_eval`` / arena-hard-auto and the other way round; the
command-line scorer is ``python -m inpo.score``.
"""
