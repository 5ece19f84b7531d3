"""Command-line entry points: ``atinuke pretrain|finetune|evaluate|experiment|lr-sweep|prepare-data|data``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``; modules are
imported only when their command runs, so ``--help`` is quick. :func:`run_cli` turns every expected failure
(bad values, missing or malformed files, corrupt checkpoints) into one line on stderr and exit code 2; the
``workbench`` and ``probes`` commands reuse it.
"""
from __future__ import annotations

import importlib
import logging
import sys
from typing import Optional, Sequence

from atinuke.errors import UserInputError

ATINUKE_COMMANDS = {
    "prepare-data": ("atinuke.data_cli", "fetch the offline corpora and benchmark excerpts, build the diagnostic suite"),
    "data": ("atinuke.data_list", "list each task's data: source (real/registry-real/silver), sizes, licence"),
    "corpus": ("atinuke.corpus_cli", "words per pretraining source and split (atinuke corpus stats)"),
    "pretrain": ("atinuke.pretrain", "pretrain Atinuke with MLM or CLM"),
    "finetune": ("atinuke.finetune", "fine-tune a model on a benchmark task"),
    "evaluate": ("atinuke.finetune_eval", "evaluate a fine-tuned model on a benchmark task"),
    "experiment": ("atinuke.experiment", "pretrain and fine-tune every arm and seed, tabulate the results"),
    "lr-sweep": ("atinuke.lr_sweep", "each arm's best peak learning rate on one grid, at a short budget"),
}

# Failures a user can fix: bad input, which the code reports as UserInputError naming the value or the file, and
# the file system refusing (a missing file, permissions, a full disk). Anything else (ValueError, KeyError, ...)
# is a bug and keeps its traceback and exit code 1.
EXPECTED_ERRORS = (UserInputError, OSError)


def run_cli(prog: str, commands: dict[str, tuple[str, str]], argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, run the chosen subcommand, and map expected errors to a one-line message.

    Args:
        prog: program name shown in help and errors.
        commands: subcommand name -> (module path, help line).
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code (0 on success, 2 on a user error).
    """
    from atinuke.validation import OneLineArgumentParser, check_args, option_flags

    parser = OneLineArgumentParser(prog=prog)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_path, help_line) in commands.items():
        sub_parser = sub.add_parser(name, help=help_line)
        if name == chosen:  # only the chosen command's module is imported
            module = importlib.import_module(module_path)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error, already printed as one line (2)
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        check_args(args, option_flags(parser))
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        message = str(error)
        print(f"{prog} {args.command}: error: {message.splitlines()[0] if message else type(error).__name__}",
              file=sys.stderr)
        return 2
    finally:
        from atinuke.io import release_out_dirs

        release_out_dirs()  # the command's claims on its output directories end with it


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``atinuke`` console script."""
    return run_cli("atinuke", ATINUKE_COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
