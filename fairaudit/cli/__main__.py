"""``python -m fairaudit.cli``: the same as the installed ``fairaudit`` command."""

from fairaudit.cli.app import run

if __name__ == "__main__":  # run() ends the process: importing this module must not
    run()
