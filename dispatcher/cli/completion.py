"""``smsdispatch completion bash|zsh``: a completion script generated from the parser itself.

The script holds the command tree as tables (sub-commands, options, option values) and a small
function that walks the words typed so far: completing never starts Python, so a tab is
instant even though ``smsdispatch`` imports a server's worth of modules. It is regenerated from
the parser each time it is printed, so a new command completes as soon as it is registered.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

from dispatcher.cli.parsers import subcommands, walk


@dataclass
class Tables:
    """What completes where: keys are command paths (``"smsdispatch accounts"``), and command
    path + option for the values an option takes (empty: a file name)."""

    subs: dict[str, list[str]] = field(default_factory=dict)
    words: dict[str, list[str]] = field(default_factory=dict)
    opts: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)


def tables(parser: argparse.ArgumentParser) -> Tables:
    """The completion tables of ``parser``'s whole tree."""
    t = Tables()
    for path, p in walk(parser):
        key = " ".join(path)
        subs = list(subcommands(p))
        t.subs[key] = subs
        words = list(subs)
        opts: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.option_strings:  # a positional: its choices, if it has any
                words += [str(c) for c in action.choices or ()]
                continue
            if action.help == argparse.SUPPRESS:
                continue
            opts += action.option_strings
            if action.nargs != 0:
                for option in action.option_strings:
                    t.values[f"{key} {option}"] = [str(c) for c in action.choices or ()]
        t.words[key] = words
        t.opts[key] = opts
    return t


def _assoc(name: str, table: dict[str, list[str]]) -> str:
    rows = "".join(
        f"    [{shlex.quote(k)}]={shlex.quote(' '.join(v))}\n" for k, v in sorted(table.items())
    )
    return f"{name}=(\n{rows})\n"


def _zsh_assoc(name: str, table: dict[str, list[str]]) -> str:
    rows = "".join(
        f"    {shlex.quote(k)} {shlex.quote(' '.join(v))}\n" for k, v in sorted(table.items())
    )
    return f"{name}=(\n{rows})\n"


_BASH = r"""
_smsdispatch() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" p="smsdispatch" w i
    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w="${COMP_WORDS[i]}"
        [[ " ${_smsdispatch_subs[$p]} " == *" $w "* ]] && p="$p $w"
    done
    COMPREPLY=()
    if [[ -n "${_smsdispatch_values["$p $prev"]+set}" ]]; then
        if [[ -n "${_smsdispatch_values["$p $prev"]}" ]]; then
            COMPREPLY=($(compgen -W "${_smsdispatch_values["$p $prev"]}" -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "${_smsdispatch_opts[$p]}" -- "$cur"))
    elif [[ -n "${_smsdispatch_words[$p]}" ]]; then
        COMPREPLY=($(compgen -W "${_smsdispatch_words[$p]}" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}
complete -F _smsdispatch smsdispatch
"""

_ZSH = r"""
_smsdispatch() {
    local p=smsdispatch w i cur=${words[CURRENT]} prev=${words[CURRENT-1]}
    for (( i = 2; i < CURRENT; i++ )); do
        w=${words[i]}
        [[ " ${_smsdispatch_subs[$p]} " == *" $w "* ]] && p="$p $w"
    done
    if (( ${+_smsdispatch_values[$p $prev]} )); then
        if [[ -n ${_smsdispatch_values[$p $prev]} ]]; then
            compadd -- ${=_smsdispatch_values[$p $prev]}
        else
            _files
        fi
    elif [[ $cur == -* ]]; then
        compadd -- ${=_smsdispatch_opts[$p]}
    elif [[ -n ${_smsdispatch_words[$p]} ]]; then
        compadd -- ${=_smsdispatch_words[$p]}
    else
        _files
    fi
}
(( ${+functions[compdef]} )) || { autoload -Uz compinit && compinit }
compdef _smsdispatch smsdispatch
"""


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    t = tables(parser)
    named = {
        "_smsdispatch_subs": t.subs,
        "_smsdispatch_words": t.words,
        "_smsdispatch_opts": t.opts,
        "_smsdispatch_values": t.values,
    }
    head = f"# {shell} completion for smsdispatch: source <(smsdispatch completion {shell})\n"
    if shell == "bash":
        body = "declare -gA " + " ".join(named) + "\n"
        body += "".join(_assoc(name, table) for name, table in named.items())
        return head + body + _BASH
    body = "typeset -gA " + " ".join(named) + "\n"
    body += "".join(_zsh_assoc(name, table) for name, table in named.items())
    return head + body + _ZSH
