"""The one masking mechanism: which values are keys, and the chokepoints that mask them (the run dir's writers, the
CLI's streams, the log of other libraries' output, an error's one line, MLflow's params)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from refed_dspy.errors import ConfigError
from refed_dspy.secrets import MaskedStream, first_line, hold, is_credential_name, mask, mask_value, masked_streams
from refed_dspy.store.jsonl import JsonlWriter, write_json_atomic, write_jsonl_atomic, write_text_atomic

KEY = "sk-unit-test-key-7Q2M9XKPL4WZ"  # long: masked to its first 3 and last 4 characters


def test_credential_names():
    for name in (
        "OPENAI_API_KEY",
        "MY_VLLM_KEY",
        "HF_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "APP_SECRET",
        "SNOWFLAKE_JWT",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        assert is_credential_name(name), name
    for name in ("PATH", "HOME", "OPENAI_API_BASE", "AWS_ACCESS_KEY_ID", "KEYBOARD_LAYOUT"):
        assert not is_credential_name(name), name


def test_a_credential_variable_is_masked_in_every_spelling(monkeypatch):
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    text = f"Bearer {KEY} {json.dumps({'k': KEY})} <b>{KEY}</b>"
    out = mask(text)
    assert KEY not in out and out.count("sk-...WZ") == 0 and out.count("sk-...L4WZ") == 3
    assert mask("nothing secret here") == "nothing secret here"


def test_short_values_placeholders_paths_and_other_variables_are_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("REFED_SHORT_KEY", "abc12")  # under 6 characters: a setting, not a secret
    monkeypatch.setenv("REFED_EMPTY_KEY", "EMPTY")  # what a local server takes as a key that checks nothing
    monkeypatch.setenv("REFED_UNUSED_KEY", "unused")
    monkeypatch.setenv("REFED_UNIT_SETTING", "a-long-setting-value-0123456789")  # not a credential's name
    monkeypatch.setenv("REFED_UNIT_CREDENTIALS", str(tmp_path))  # the path of a credentials file, not one
    text = f"abc12 EMPTY unused a-long-setting-value-0123456789 {tmp_path}"
    assert mask(text) == text


def test_a_short_key_is_masked_as_a_whole_token_only(monkeypatch):
    """A key of 6 to 19 characters is masked wherever it stands alone (a header, a query, a quoted value), never
    inside a longer word: masking `sk-short` inside `sk-shorter` would mangle text and hide nothing."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-short")
    said = 'Bearer sk-short; {"key": "sk-short"} ?key=sk-short&x=1 <b>sk-short</b> sk-shorter xsk-short'
    assert mask(said) == 'Bearer ***; {"key": "***"} ?key=***&x=1 <b>***</b> sk-shorter xsk-short'


def test_a_long_key_is_masked_even_inside_a_word(monkeypatch):
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    assert KEY not in mask(f"prefix{KEY}suffix")


def _runs_of(key: str, text: str, length: int = 12) -> list[str]:
    """Every run of `length` characters of `key` that `text` holds."""
    return [key[i : i + length] for i in range(len(key) - length + 1) if key[i : i + length] in text]


def test_a_piece_of_a_key_is_masked_wherever_it_stands(monkeypatch):
    """A gateway that quotes the key's first 20 characters, or the key broken by a newline: every run of 12 or more
    of its characters is masked, whatever surrounds it (JSON-escaped, after a letter of another script); a run of 11
    is left (the rule's bound), and so is ordinary text with long words."""
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    half = len(KEY) // 2
    said = [
        f"your key begins {KEY[:20]}...",
        f"it reads {KEY[:half]}\n{KEY[half:]}",
        json.dumps({"quote": f"{KEY[:half]}\n{KEY[half:]}"}),
        f"é{KEY[3:18]}é and x{KEY[-14:]}",
    ]
    for text in said:
        out = mask(text)
        assert _runs_of(KEY, out) == [] and "***" in out, (text, out)
    assert mask(f"[{KEY[:11]}]") == f"[{KEY[:11]}]"
    prose = "Internationalization and photosynthesis, characteristically: sk-unit-tes and a unit-test."
    assert mask(prose) == prose


def test_a_long_text_with_no_piece_is_passed_over_and_one_with_pieces_masked_everywhere(monkeypatch):
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    text = "lorem ipsum dolor sit amet " * 20_000
    assert mask(text) is text
    holding = text + KEY[2:16] + text + KEY[9:] + "x" * 30
    out = mask(holding)
    assert _runs_of(KEY, out) == [] and out.count("***") == 2 and len(out) == len(holding) - 14 - len(KEY[9:]) + 6


def test_secrets_in_exporter_headers_and_tracking_urls_are_held(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20otlp-token-93XK,x-tenant=acme")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://me:mlflow-pass-77Q@mlflow.example.com")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://gw:gateway-pass-51R@gateway.example.com/v1")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://az:azure-pass-62S@res.openai.azure.com")
    out = mask("otlp-token-93XK and mlflow-pass-77Q and gateway-pass-51R and azure-pass-62S and acme")
    assert "otlp-token-93XK" not in out and "mlflow-pass-77Q" not in out and out.endswith("acme")
    assert "gateway-pass-51R" not in out and "azure-pass-62S" not in out  # a run records where its calls went


def test_mask_value_masks_every_string_inside(monkeypatch):
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    value = {"outputs": [{"text": f"echo {KEY}"}], "usage": {"prompt_tokens": 3}, KEY: (KEY, 1)}
    masked = mask_value(value)
    assert KEY not in json.dumps(masked) and masked["usage"] == {"prompt_tokens": 3}


def test_a_held_inline_key_is_masked():
    inline = "inline-key-of-no-variable-93LQ"
    hold(inline)
    assert inline not in mask(f"the server said {inline}")
    assert mask(f"x {inline[:12]}") == "x ***"  # 12 characters of it in a row are a piece of it
    assert mask(f"x {inline[:11]}") == f"x {inline[:11]}"  # fewer are not


def test_the_run_dirs_writers_mask(monkeypatch, tmp_path):
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    writer = JsonlWriter(tmp_path / "rejects.jsonl")
    writer.append({"detail": f"500: header authorization: Bearer {KEY}"})
    writer.close()
    write_json_atomic(tmp_path / "summary.json", {"last_error": KEY})
    write_jsonl_atomic(tmp_path / "judgments.jsonl", [{"reason": KEY}])
    write_text_atomic(tmp_path / "report.html", f"<p>{KEY}</p>")
    for path in tmp_path.iterdir():
        text = path.read_text()
        assert KEY not in text and "sk-...L4WZ" in text, path
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["detail"].endswith("Bearer sk-...L4WZ")


def test_streams_and_one_line_errors_mask(monkeypatch):
    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    sink = io.StringIO()
    stream = MaskedStream(sink)
    stream.write(f"key {KEY}\n")
    stream.writelines([KEY, "\n"])
    assert KEY not in sink.getvalue() and sink.getvalue().count("sk-...L4WZ") == 2
    before = sys.stderr
    with masked_streams():
        assert isinstance(sys.stderr, MaskedStream) and sys.stderr.wrapped is before
    assert sys.stderr is before
    assert KEY not in first_line(RuntimeError(f"401: {KEY} refused"))


def test_mlflow_params_mask(monkeypatch):
    from refed_dspy.tracking.mlflow_runs import flat_params

    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    assert KEY not in json.dumps(flat_params({"teacher": {"extra": {"note": KEY}}}))


def test_the_quiet_log_masks(monkeypatch, tmp_path):
    from refed_dspy.runtime.quiet import quieted

    monkeypatch.setenv("REFED_UNIT_API_KEY", KEY)
    with quieted(tmp_path / "libraries.log"):
        print(f"a library says {KEY}")
    text = (tmp_path / "libraries.log").read_text()
    assert "a library says" in text and KEY not in text


def test_a_password_in_a_tracking_uri_or_an_environment_endpoint_is_kept_out_of_the_run_dirs_records(monkeypatch):
    """A database's URI holds its password (postgresql://user:secret@host/db): the run dir's config.toml wrote it as
    it was, and the fingerprint wrote the password of an OPENAI_BASE_URL that held one (a review found both)."""
    from refed_dspy.config import load_config
    from refed_dspy.config.load import to_toml
    from refed_dspy.config.schema import fingerprint
    from refed_dspy.config.section import without_password

    config = load_config(None, ["tracking.mlflow_uri='postgresql://me:dbpass-9f8e7d6c5b@db.example.com/mlflow'"])
    text = to_toml(config)
    assert "dbpass" not in text and 'mlflow_uri = "postgresql://***@db.example.com/mlflow"' in text
    assert mask("could not connect with dbpass-9f8e7d6c5b") == "could not connect with ***"  # held as it was read
    monkeypatch.setenv("OPENAI_BASE_URL", "http://me:hunter2-9f8e7d6c5b@10.0.0.5:8000/v1")
    assert fingerprint(load_config(None, []))["teacher"]["api_base"] == "http://***@10.0.0.5:8000/v1"
    # a gateway's key in the query of the endpoint variable: kept out of the records and held; in a config's api_base,
    # refused (an attacker found it written in config.toml, samples.jsonl, summary.json and MLflow)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.5:8000/v1?api-key=gwq-SECRETgatewayquerykey0123456789")
    assert fingerprint(load_config(None, []))["teacher"]["api_base"] == "http://10.0.0.5:8000/v1?api-key=***"
    assert "gwq-SECRET" not in mask("the gateway said gwq-SECRETgatewayquerykey0123456789")
    with pytest.raises(ConfigError, match=r"carries a key in its query \(http://10.0.0.5:8000/v1\?key=\*\*\*\)"):
        load_config(None, ["teacher.api_base='http://10.0.0.5:8000/v1?key=gwq-SECRETgatewayquerykey0123456789'"])
    for query in ("api-version=2024-10-21", "auth=none", "author=me", "keyword=summaries", "max_tokens=4096"):
        assert load_config(None, [f"teacher.api_base='http://10.0.0.5:8000/v1?{query}'"]), query  # no key in these
    assert without_password("http://h/v1?sig=abcdefghijkl&x=10&y=1") == "http://h/v1?sig=***&x=10&y=1"
    for query in ("accesstoken=sk-abcdefghijklmnop1234", "secretKey=abcdefghijklmnop", "subscription-key=abcdefghijk"):
        with pytest.raises(ConfigError, match="carries a key in its query"):  # a credential word ending a name too
            load_config(None, [f"teacher.api_base='http://10.0.0.5:8000/v1?{query}'"])
