"""The speaker key's removal from a body's JSON text: the cut must equal parse + re-serialise."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wking_device.upload._speaker_key import _without_speaker_key


def reference(body: bytes) -> bytes:
    """What the uploader sent before the cut: parse, delete the top-level key, serialise."""
    value = orjson.loads(body)
    if isinstance(value, dict) and "speaker" in value:
        del value["speaker"]
        return orjson.dumps(value)
    return body


# keys that look like the speaker key from the inside: escapes, quotes, prefixes, suffixes
TRICKY_KEYS = st.sampled_from(
    [
        "speaker",
        'x"speaker',
        'speaker"',
        '"speaker":',
        "speaker\\",
        "\\speaker",
        "speakers",
        "a,",
        "{",
        "spe\x01aker",
        "\u00e9speaker",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    TRICKY_KEYS,
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), TRICKY_KEYS), children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    members = draw(st.lists(st.tuples(st.one_of(st.text(max_size=8), TRICKY_KEYS), VALUES)))
    body = dict(members)
    if draw(st.booleans()):
        # the key at a chosen place: first, middle or last, any kind of value
        items = list(body.items())
        items.insert(draw(st.integers(0, len(items))), ("speaker", draw(VALUES)))
        body = dict(items)
    return body


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_the_cut_equals_parse_and_serialise_for_orjson_bodies(body: dict[str, Any]) -> None:
    text = orjson.dumps(body)
    assert _without_speaker_key(text) == reference(text)


@pytest.mark.parametrize(
    "text",
    [
        b'{"speaker":"spk:1"}',
        b'{"speaker":"spk:1","a":1}',
        b'{"a":1,"speaker":"spk:1"}',
        b'{"a":1,"speaker":"spk:1","b":2}',
        b'{"speaker":{"speaker":1},"a":1}',  # twice: the full path
        b'{"a":{"speaker":1}}',  # only nested: unchanged
        b'{"a":{"speaker":1},"speaker":1}',  # nested with the same value, and top level
        b'{"x\\"speaker":1,"speaker":2}',  # a key ending in "speaker (escaped quote)
        b'{"x\\"speaker":1}',  # only that key: unchanged
        b'{"a":"\\"speaker\\":1","speaker":3}',  # the mark inside a string
        b'{"a":"x\\\\","speaker":[1,{"b":"}"}]}',  # a string ending in a backslash
        b'{"speaker":1.5e300,"a":[]}',
        b'{"speaker":null}',
        b'{"\\u0001":"\\u0001","speaker":true}',  # an escape anywhere: the full path
        b'{"speaker":"caf\xc3\xa9","z":"\xe2\x82\xac"}',
        # the key first with a string value (how the collectors write it: cut unparsed)
        b'{"speaker":"spk:0123456789abcdef0123456789abcdef","kind":"read"}',
        b'{"speaker":"","a":1}',
        b'{"speaker":"a,b}","c":"}"}',  # the value holding a comma and a brace
        b'{"speaker":"x\\\\"}',  # a value ending in a backslash: the full path
        b'{"speaker":"x\\"y","a":1}',  # an escaped quote inside the value
        b'{"speaker":"spk:1","a":{"speaker":"spk:1"}}',  # nested too: the full path
        b'{"speaker":"spk:1","a":"\\"speaker\\""}',  # the key's text inside a string
        b'{"speaker":"spk:1","b":"\\\\","c":1}',  # an escape elsewhere: the full path
    ],
)
def test_adversarial_bodies(text: bytes) -> None:
    assert _without_speaker_key(text) == reference(text)


@pytest.mark.parametrize(
    "text",
    [
        # not orjson's output: another spelling of the top-level key, whitespace; a nested
        # "speaker" must never be cut in its place, and the JSON value is what counts
        b'{"\\u0073peaker":1,"d":{"speaker":1}}',
        b'{"spe\\u0061ker":1,"d":{"speaker":1}}',
        b'{"speaker" :1,"d":{"speaker":1}}',
        b'{ "speaker":1,"a":2}',
        b'{"speaker": 1,"a":2}',
        b'{"speaker":1 ,"a":2}',
        b'{"a":2, "speaker":1}',
        b'{"speaker":1} ',
        # the key first, then the same key again (only other JSON text can repeat a key):
        # the last one wins when parsed, so cutting the first would send it
        b'{"speaker":"spk:a","speaker":"spk:b"}',
        b'{"speaker":"spk:a","spe\\u0061ker":"spk:b"}',
        b'{"speaker":"spk:a","\\u0073peaker":"spk:b","c":1}',
        b'{"speaker":"spk:a"} ',
        b'{"speaker":"spk:a" ,"b":1}',
    ],
)
def test_other_json_keeps_its_value(text: bytes) -> None:
    assert orjson.loads(_without_speaker_key(text)) == orjson.loads(reference(text))


def test_a_repeated_speaker_key_never_reaches_the_collector() -> None:
    for text in (
        b'{"speaker":"spk:a","speaker":"spk:b"}',
        b'{"speaker":"spk:a","spe\\u0061ker":"spk:b","c":1}',
    ):
        assert "speaker" not in orjson.loads(_without_speaker_key(text))


def test_a_nested_speaker_key_is_never_cut_for_the_top_level_one() -> None:
    # the top-level key spelled with an escape, a nested one written plainly: the cut must
    # not take the nested one (it would send the top-level one)
    text = b'{"\\u0073peaker":"spk:top","d":{"speaker":"spk:top"}}'
    assert orjson.loads(_without_speaker_key(text)) == {"d": {"speaker": "spk:top"}}
