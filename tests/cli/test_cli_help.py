"""The command-line tools explain themselves: ``eleaf --version``, an unknown command named
as such (exit 2), and every option's default in every ``--help``."""
import argparse
import subprocess
import sys

import pytest

import eleaf
from eleaf.__main__ import COMMANDS, main


def parsers():
    from eleaf.cli import bench, data, demo, features, info
    from eleaf.train import cli
    out = {'demo': demo.build_parser(), 'info': info.build_parser(),
           'bench': bench.build_parser(), 'features': features.build_parser(),
           'train': cli.get_args_parser(), 'eval': cli.get_args_parser(eval_mode=True)}
    top = data.get_args_parser()
    out['data'] = top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out['data ' + name] = sub
    return out


def undocumented_defaults(parser):
    """Options without help, and options with a default value (other than None: not given,
    False: a flag) whose --help line does not say it."""
    formatter = parser._get_formatter()
    bad = []
    for action in parser._actions:
        if (not action.option_strings or isinstance(action, (argparse._HelpAction,
                                                             argparse._VersionAction))):
            continue
        if not action.help:
            bad.append(action.option_strings[0])
            continue
        if (action.required or action.default is None
                or isinstance(action, argparse._StoreTrueAction)):
            continue
        if 'default' not in formatter._expand_help(action).lower():
            bad.append(action.option_strings[0])
    return bad


def test_every_command_has_a_parser():
    assert set(COMMANDS) <= set(parsers())


@pytest.mark.parametrize('name', sorted(parsers()))
def test_help_shows_every_default(name):
    parser = parsers()[name]
    assert undocumented_defaults(parser) == []
    assert isinstance(parser._get_formatter(), argparse.ArgumentDefaultsHelpFormatter)


def test_help_defaults_are_the_real_ones():
    text = parsers()['train'].format_help()
    assert '(default: 256)' in text and '(default: Leaf)' in text  # --batch-size, --frontend


def test_version(capsys):
    assert main(['--version']) == 0
    assert capsys.readouterr().out.strip() == 'eleaf %s' % eleaf.__version__


def test_unknown_command_says_so(capsys):
    assert main(['nosuch']) == 2
    err = capsys.readouterr().err
    assert "unknown command 'nosuch'" in err and 'demo' in err
    assert main(['--nosuch']) == 2
    assert "unknown option '--nosuch'" in capsys.readouterr().err
    assert main([]) == 0 and 'usage: eleaf' in capsys.readouterr().out


def test_console_entry_point():
    proc = subprocess.run([sys.executable, '-m', 'eleaf', 'nosuch'], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "unknown command 'nosuch'" in proc.stderr
