"""A mistyped option or command is one usage error (exit 2) that names the nearest one the command knows, under the
usage of the command given, not of `refed` itself."""

import pytest

from refed_dspy.cli import build_parser


@pytest.mark.parametrize(
    "argv, usage, says",
    [
        (["synthesize", "--confg", "x.toml"], "usage: refed synthesize", "--confg x.toml; did you mean --config?"),
        (["synthesize", "--sett=a.b=1"], "usage: refed synthesize", "--sett=a.b=1; did you mean --set?"),
        (["synthesize", "--hlep"], "usage: refed synthesize", "--hlep; did you mean --help?"),
        (["judge", "run", "RUN", "--fress"], "usage: refed judge run", "--fress; did you mean --fresh?"),
        (["synthesise"], "usage: refed [", "invalid choice: 'synthesise' (choose from"),
        (["judge", "rnu"], "usage: refed judge", "did you mean run?"),
        (["--debugg", "synthesize"], "usage: refed [", "--debugg; did you mean --debug?"),
    ],
)
def test_a_mistyped_name_is_answered_with_the_nearest_one(capsys, argv, usage, says):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith(usage) and says in err, err
    if argv == ["synthesise"]:
        assert err.rstrip().endswith("; did you mean synthesize?"), err


def test_a_name_near_nothing_known_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synthesize", "--zzzz"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzz" in err and "did you mean" not in err, err
