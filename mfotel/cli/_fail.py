"""How every command reports bad input: one line naming it and the fix, exit code 2."""

from __future__ import annotations

from typing import NoReturn

import click


def fail(err: Exception | str) -> NoReturn:
    click.echo(f"mfotel: {err}", err=True)
    raise SystemExit(2)
