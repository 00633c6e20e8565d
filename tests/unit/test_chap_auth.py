"""CHAP (RFC 7143 12.1.3 / RFC 1994): encodings, digests, the target-side exchange."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target.config.model import AuthConfig
from target.iscsi.chap import (
    ChapAlgorithm,
    ChapAuthenticator,
    ChapError,
    chap_response,
    decode_binary,
    encode_binary,
)

CREDS = AuthConfig("user", "secretsecret", "tuser", "tsecretsecret")


def _counter_bytes() -> object:
    counter = itertools.count(1)
    return lambda n: bytes((next(counter) + i) & 0xFF for i in range(n))


def test_md5_vector() -> None:
    # RFC 1994 response: MD5(id || secret || challenge)
    got = chap_response(ChapAlgorithm.MD5, 1, b"secret", bytes.fromhex("00112233"))
    assert got == hashlib.md5(b"\x01secret" + bytes.fromhex("00112233")).digest()
    assert got.hex() == hashlib.md5(bytes.fromhex("01736563726574") + bytes.fromhex("00112233")).hexdigest()


def test_digest_sizes() -> None:
    assert [a.digest_size for a in ChapAlgorithm] == [16, 20, 32, 32]


def test_binary_encodings() -> None:
    assert encode_binary(b"\x01\xab") == "0x01ab"
    assert encode_binary(b"\x01\xab", base64_form=True) == "0bAas="
    assert decode_binary("0X01AB") == b"\x01\xab"
    assert decode_binary("0xabc") == b"\x0a\xbc"  # odd digit count: implied leading zero
    assert decode_binary("0bAas=") == b"\x01\xab"
    for bad in ("01ab", "0x", "0xzz", "0b!!", "", "0x" + "00" * 5000):
        with pytest.raises(ChapError):
            decode_binary(bad)


@given(st.binary(min_size=1, max_size=200), st.booleans())
def test_binary_round_trip(value: bytes, b64: bool) -> None:
    assert decode_binary(encode_binary(value, base64_form=b64)) == value


@given(st.text(max_size=100))
def test_decode_garbage_only_chap_error(text: str) -> None:
    try:
        out = decode_binary(text)
    except ChapError:
        return
    assert isinstance(out, bytes) and text[:2].lower() in ("0x", "0b")


def test_exchange_and_algorithm_choice_follows_initiator_order() -> None:
    auth = ChapAuthenticator(CREDS, random_bytes=_counter_bytes())  # type: ignore[arg-type]
    step = auth.step({"CHAP_A": "8,7,5"})
    answers = dict(step.answers)
    assert answers["CHAP_A"] == "8" and not step.done
    challenge = decode_binary(answers["CHAP_C"])
    assert len(challenge) == 32
    r = chap_response(ChapAlgorithm.SHA3_256, int(answers["CHAP_I"]), b"secretsecret", challenge)
    assert r == hashlib.sha3_256(bytes([int(answers["CHAP_I"])]) + b"secretsecret" + challenge).digest()
    step = auth.step({"CHAP_N": "user", "CHAP_R": encode_binary(r, base64_form=True)})
    assert step.done and step.answers == [] and auth.done
    with pytest.raises(ChapError):
        auth.step({"CHAP_A": "5"})


@pytest.mark.parametrize(
    "keys",
    [
        {"CHAP_A": "5", "CHAP_N": "x"},  # extra key with CHAP_A
        {"CHAP_N": "user"},  # no CHAP_A first
        {"CHAP_A": "1,2,3"},  # nothing supported
    ],
)
def test_bad_first_step(keys: dict[str, str]) -> None:
    with pytest.raises(ChapError):
        ChapAuthenticator(CREDS).step(keys)


def test_no_credentials() -> None:
    with pytest.raises(ChapError):
        ChapAuthenticator(AuthConfig()).step({"CHAP_A": "5"})


def test_mutual_bad_identifier() -> None:
    auth = ChapAuthenticator(CREDS)
    a = dict(auth.step({"CHAP_A": "5"}).answers)
    r = chap_response(ChapAlgorithm.MD5, int(a["CHAP_I"]), b"secretsecret", decode_binary(a["CHAP_C"]))
    with pytest.raises(ChapError):
        auth.step({"CHAP_N": "user", "CHAP_R": encode_binary(r), "CHAP_I": "300", "CHAP_C": "0x" + "11" * 16})


def test_mutual_needs_both_keys() -> None:
    auth = ChapAuthenticator(CREDS)
    a = dict(auth.step({"CHAP_A": "5"}).answers)
    r = chap_response(ChapAlgorithm.MD5, int(a["CHAP_I"]), b"secretsecret", decode_binary(a["CHAP_C"]))
    with pytest.raises(ChapError):
        auth.step({"CHAP_N": "user", "CHAP_R": encode_binary(r), "CHAP_I": "3"})


def test_empty_steps_wait() -> None:
    auth = ChapAuthenticator(CREDS)
    assert auth.step({}).answers == [] and not auth.done
