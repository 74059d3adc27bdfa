"""Request decoding (inputs.py): which refusal each kind of bad input gets, without a server."""

import inspect
import re

import msgspec
import pytest

from authgres.errors import AuthError
from authgres.inputs import MAX_DEPTH, MAX_ITEMS, Body, JsonObject, Text, declaration_of, decode_body
from authgres.routes import TABLES


class Sample(Body):
    name: Text | None = None
    flag: bool | None = None
    count: int | None = None
    data: JsonObject | None = None


def refusal(raw: bytes) -> tuple[int, str, str]:
    with pytest.raises(AuthError) as caught:
        decode_body(raw, Sample)
    return caught.value.status, caught.value.code, caught.value.message


def nested(depth: int) -> bytes:
    return b'{"data": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


def test_good_bodies_decode():
    assert decode_body(b"", Sample) == Sample()
    assert decode_body(b"  \n", Sample) == Sample()
    assert decode_body(b'{"name": null, "other": [1, {"x": 2}]}', Sample) == Sample()
    assert decode_body(b'{"name": "\\ud83d\\ude00"}', Sample).name == "\N{GRINNING FACE}"
    assert decode_body(nested(MAX_DEPTH), Sample).data is not None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"name": 42}', "$.name"),
        (b'{"flag": "yes"}', "$.flag"),
        (b'{"count": 1.5}', "$.count"),
        (b'{"data": [1]}', "$.data"),
        (b"[]", None),
    ],
)
def test_a_wrong_json_type_is_bad_json_naming_the_member(raw, field):
    status, code, message = refusal(raw)
    assert (status, code) == (400, "bad_json")
    if field:
        assert field in message


@pytest.mark.parametrize(
    "raw",
    [b"{", b"nope", b'{"name": "\\ud800"}', b'{"name": "\\udc00x"}', b'{"name": "\xff"}', b'{"name": "\xed\xa0\x80"}'],
)
def test_not_json_is_bad_json(raw):
    assert refusal(raw)[:2] == (400, "bad_json")


def ignored(depth: int) -> bytes:
    return b'{"ignored": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 5_000, 100_000])
def test_deep_nesting_is_bad_json_at_any_depth(depth):
    assert refusal(nested(depth))[:2] == (400, "bad_json")


def test_an_ignored_member_is_skipped_within_the_interpreters_recursion_limit():
    # msgspec skips unknown members without building them, counting depth against the recursion limit.
    assert decode_body(ignored(500), Sample) == Sample()
    for depth in (5_000, 100_000):
        assert refusal(ignored(depth))[:2] == (400, "bad_json")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "a\\u0000b"}',
        b'{"name": "' + b"x" * 1025 + b'"}',
        b'{"data": {"k": "a\\u0000"}}',
        b'{"data": {"a\\u0000": 1}}',
        b'{"data": {"k": 1e400}}',
        b'{"data": {"k": 18446744073709551616}}',
        b'{"data": {"k": ' + b"9" * 5000 + b"}}",
        b'{"data": {"k": [' + b",".join([b"0"] * (MAX_ITEMS + 1)) + b"]}}",
    ],
)
def test_values_out_of_bounds_are_validation_failed(raw):
    assert refusal(raw)[:2] == (400, "validation_failed")


def test_nul_refusal_names_the_member():
    assert refusal(b'{"name": "\\u0000"}')[2] == "$.name must not contain a NUL character"
    assert refusal(b'{"data": {"a": ["\\u0000"]}}')[2] == "$.data.a[0] must not contain a NUL character"


def test_an_escaped_backslash_before_u0000_is_no_nul():
    assert decode_body(b'{"name": "\\\\u0000"}', Sample).name == "\\u0000"


def test_msgspec_words_type_mismatches_as_inputs_expects():
    # inputs._refusal tells bad_json from validation_failed by this wording; an upgrade that changes it fails here.
    with pytest.raises(msgspec.ValidationError, match=r"^Expected `str \| null`, got `int` - at `\$\.name`$"):
        msgspec.json.decode(b'{"name": 1}', type=Sample)
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b'{"name": "' + b"x" * 1025 + b'"}', type=Sample)
    assert not re.match(r"Expected `[^`]+`, got", str(caught.value))


def test_every_handler_is_declared_and_reads_its_inputs_only_through_its_declaration():
    for table in TABLES:
        for route in table:
            assert declaration_of(route.handler) is not None, route
            source = inspect.getsource(inspect.unwrap(route.handler))
            for reading in ("request.query", "request.read", "request.post", "request.json", "match_info"):
                assert reading not in source, (route, reading)
