"""The benchmarks the paper reports, as their own tools run them: AlpacaEval 2.0 (``alpaca_eval``:
the alpaca-eval package's annotator, order and LC win rate), Arena-Hard v0.1 (``arena_hard``:
its judge_config.yaml and v0.1 scoring) and MT-Bench (``mt_bench``: FastChat's judge prompts and
score), their official file formats, and a command that fetches their public files (``download``).

The functions read and write the files the official tools read and write, so a run of this
project can be scored by ``alpaca_eval`` / arena-hard-auto / FastChat and the other way round;
the command-line scorer is ``python -m inpo.score``.
"""
