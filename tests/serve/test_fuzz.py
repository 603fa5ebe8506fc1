"""Property: no client input produces a 500. Hypothesis over the decoders, the request parser and the server's
whole parse path (bounded to a few seconds), then a handful of the generated requests over real sockets.

Families this found on main 4f85ac9: a numpy scalar that does not fit its dtype (``np.int8(300)`` ->
OverflowError -> 500), a state list holding a huge integer (OverflowError -> 500).
"""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oft.serve import codec
from oft.serve.client import HttpClientPolicy, WebsocketClientPolicy
from oft.serve.protocol import INSTRUCTION_KEYS, STATE_KEYS, RequestError, parse_observation
from oft.serve.server import PolicyServer, ServerConfig, ServerThread
from oft.spec import get_spec

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SPEC = get_spec("libero")

KEYS = st.sampled_from(
    [
        *INSTRUCTION_KEYS,
        *STATE_KEYS,
        "images",
        "observation/image",
        "observation/wrist_image",
        "full_image",
        "wrist_image",
        "__ctrl__",
        "encoded",
        "__ndarray__",
        "__numpy__",
        "__npgeneric__",
        "data",
        "dtype",
        "shape",
    ]
)
DTYPES = st.sampled_from(
    ["<f4", "|u1", "<i8", "|b1", ">f8", "<c8", "|O", "V8", "<U4", "f4,i4", "(2,)f4", "M8"]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
    st.text(max_size=20), st.binary(max_size=20),
)  # fmt: skip


SHAPES = st.lists(st.integers(-2, 70), max_size=4)


def wire_array():
    """msgpack-numpy / json-numpy array headers, mostly consistent, sometimes not."""
    return st.fixed_dictionaries(
        {"dtype": st.one_of(DTYPES, SCALARS), "shape": st.one_of(SHAPES, SCALARS)},
        optional={"data": st.one_of(st.binary(max_size=64), SCALARS)},
    )


def images_like():
    shapes = st.sampled_from([(64, 64, 3), (3, 32, 32), (8, 8), (1, 1, 3), (0, 4, 3), (4, 4, 4)])
    dtypes = st.sampled_from([np.uint8, np.float32, np.int64, np.bool_])
    return st.builds(lambda s, d: np.zeros(s, d), shapes, dtypes)


VALUES = st.recursive(
    st.one_of(SCALARS, images_like()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner, max_size=4)
    ),
    max_leaves=12,
)
PAYLOADS = st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=8))


@FUZZ
@given(st.binary(max_size=200))
def test_msgpack_decoder_only_raises_decode_error(data):
    with contextlib.suppress(codec.DecodeError):
        codec.unpackb(data)


@FUZZ
@given(wire_array(), st.sampled_from(["__ndarray__", "__npgeneric__"]))
def test_msgpack_array_headers_only_raise_decode_error(header, marker):
    try:
        data = msgpack.packb({marker: True, **header}, use_bin_type=True)
    except OverflowError:
        return  # an integer msgpack cannot carry
    with contextlib.suppress(codec.DecodeError):
        codec.unpackb(data)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_json_decoder_only_raises_decode_error(data):
    with contextlib.suppress(codec.DecodeError):
        codec.json_loads(data)


@FUZZ
@given(PAYLOADS)
def test_request_parser_only_raises_request_error(payload):
    with contextlib.suppress(RequestError):
        parse_observation(payload, SPEC)


@pytest.fixture(scope="module")
def parse_server(tiny_policy):
    return PolicyServer(tiny_policy, ServerConfig(port=0))


@FUZZ
@given(payload=PAYLOADS, protocol=st.sampled_from(["msgpack", "json"]))
def test_server_parse_path_never_raises_anything_but_client_errors(parse_server, payload, protocol):
    """Everything between the bytes and the model: decode, ``encoded``, ``__ctrl__``, parse, prompt tokens."""
    try:
        data = codec.packb(payload) if protocol == "msgpack" else codec.json_dumps(payload).encode()
    except (TypeError, ValueError, OverflowError):
        return  # not encodable by our client; raw bytes are covered by the decoder properties
    decode = (lambda: codec.unpackb(data)) if protocol == "msgpack" else (
        lambda: parse_server._decode_act_body(data)[0])  # fmt: skip
    with contextlib.suppress(RequestError, codec.DecodeError):
        parse_server._parse(decode)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(payload=PAYLOADS)
def test_live_server_answers_garbage_with_4xx(live_server, payload):
    try:
        packed, text = codec.packb(payload), codec.json_dumps(payload).encode()
    except (TypeError, ValueError, OverflowError):
        return
    with WebsocketClientPolicy(live_server.ws_url, None) as ws:
        reply = ws.send_raw(packed)
    assert "error" in reply or "actions" in reply or "__ack__" in reply
    if "error" in reply:
        assert reply["error"]["type"] not in ("internal_error", "non_finite_actions"), reply
    status, reply = HttpClientPolicy(live_server.http_url).post(text)
    assert status < 500, reply


@pytest.fixture(scope="module")
def live_server(tiny_policy):
    with ServerThread(tiny_policy, ServerConfig(port=0)) as srv:
        yield srv


def test_found_families_are_client_errors():
    """The two 500s the fuzzer found on main, pinned."""
    with pytest.raises(codec.DecodeError, match="does not fit"):
        codec.unpackb(msgpack.packb({"__npgeneric__": True, "data": 300, "dtype": "|i1"}))
    request = {"image": np.zeros((8, 8, 3), np.uint8), "wrist_image": np.zeros((8, 8, 3), np.uint8),
               "prompt": "x", "state": [10**400] * 8}  # fmt: skip
    with pytest.raises(RequestError, match="list of numbers"):
        parse_observation(request, SPEC)
