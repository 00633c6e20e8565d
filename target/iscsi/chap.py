"""CHAP authentication, target side (RFC 7143 12.1.3, RFC 1994), with LIO's digest choices.

Exchange (the initiator opens; the target answers each step):

    I->T  AuthMethod=CHAP,...            T->I  AuthMethod=CHAP      (handled by the login machine)
    I->T  CHAP_A=<A1,A2,...>             T->I  CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>
    I->T  CHAP_N=<N> CHAP_R=<R>          T->I  (nothing: one-way CHAP done)
          [CHAP_I=<I'> CHAP_C=<C'>]            CHAP_N=<target user> CHAP_R=<R'>   (mutual CHAP)

R = H(I as one octet || secret || C) with H the negotiated digest: MD5 (5), SHA-1 (6), SHA-256 (7),
SHA3-256 (8). Binary values are hex ("0x...") or base64 ("0b..."), RFC 7143 6.1. Any deviation (missing key,
bad encoding, wrong name or response, a challenge of the initiator equal to ours (12.1.3: "Responders MUST
check for this condition"), a too short challenge, mutual CHAP with no target secret) is an authentication
failure: the login ends with status 02/01.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from target.config.model import AuthConfig
from target.iscsi.keys import parse_number


class ChapAlgorithm(enum.IntEnum):
    """CHAP_A values (IANA "PPP Authentication Algorithms"; LIO: iscsi_target_auth.h)."""

    MD5 = 5
    SHA1 = 6
    SHA256 = 7
    SHA3_256 = 8

    @property
    def hash_name(self) -> str:
        return {5: "md5", 6: "sha1", 7: "sha256", 8: "sha3_256"}[self.value]

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hash_name).digest_size


#: What the target accepts, in no particular order: the initiator's list order decides (RFC 7143 6.2.1).
DEFAULT_ALGORITHMS: tuple[ChapAlgorithm, ...] = (
    ChapAlgorithm.MD5,
    ChapAlgorithm.SHA1,
    ChapAlgorithm.SHA256,
    ChapAlgorithm.SHA3_256,
)

MIN_CHALLENGE_LENGTH = 8  # bytes; shorter initiator challenges are refused
MAX_CHALLENGE_LENGTH = 1024
TARGET_CHALLENGE_LENGTH = 16  # at least; the target uses max(16, digest size)


class ChapError(Exception):
    """CHAP failed; the login ends with Authentication Failure (02/01)."""


def chap_response(algorithm: ChapAlgorithm, identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 4.1: H(identifier || secret || challenge)."""
    h = hashlib.new(algorithm.hash_name)
    h.update(bytes([identifier & 0xFF]))
    h.update(secret)
    h.update(challenge)
    return h.digest()


def encode_binary(value: bytes, *, base64_form: bool = False) -> str:
    """RFC 7143 6.1 binary-value: "0x" + hex, or "0b" + base64."""
    if base64_form:
        return "0b" + base64.b64encode(value).decode("ascii")
    return "0x" + value.hex()


def decode_binary(text: str, *, limit: int = MAX_CHALLENGE_LENGTH * 2) -> bytes:
    """Decode a hex (0x/0X) or base64 (0b/0B) binary value; ChapError if malformed or too long."""
    if len(text) > 2 + 2 * limit + 4:
        raise ChapError("binary value too long")
    prefix, body = text[:2], text[2:]
    if not body:
        raise ChapError(f"empty binary value {text!r}")
    try:
        if prefix in ("0x", "0X"):
            if len(body) % 2:
                body = "0" + body  # RFC 7143 6.1: an odd number of hex digits has an implied leading 0
            return bytes.fromhex(body)
        if prefix in ("0b", "0B"):
            return base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ChapError(f"malformed binary value: {exc}") from exc
    raise ChapError("binary value without 0x or 0b prefix")


def _choose_algorithm(offer: str, allowed: Sequence[ChapAlgorithm]) -> ChapAlgorithm | None:
    for token in offer.split(","):
        number = parse_number(token)
        if number is None:
            continue
        for alg in allowed:
            if alg.value == number:
                return alg
    return None


class ChapState(enum.Enum):
    WAIT_ALGORITHM = "wait CHAP_A"
    WAIT_RESPONSE = "wait CHAP_N/CHAP_R"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChapStep:
    answers: list[tuple[str, str]]
    done: bool


class ChapAuthenticator:
    """The target's side of one CHAP exchange. `step(keys)` per login PDU; raises ChapError on failure."""

    def __init__(
        self,
        credentials: AuthConfig,
        *,
        algorithms: Sequence[ChapAlgorithm] = DEFAULT_ALGORITHMS,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.credentials = credentials
        self.algorithms = tuple(algorithms)
        self.random_bytes = random_bytes
        self.state = ChapState.WAIT_ALGORITHM
        self.algorithm: ChapAlgorithm | None = None
        self.identifier = 0
        self.challenge = b""
        self.mutual = False

    @property
    def done(self) -> bool:
        return self.state is ChapState.DONE

    def _fail(self, message: str) -> ChapError:
        self.state = ChapState.FAILED
        return ChapError(message)

    def step(self, keys: dict[str, str]) -> ChapStep:
        if self.state is ChapState.WAIT_ALGORITHM:
            return self._on_algorithm(keys)
        if self.state is ChapState.WAIT_RESPONSE:
            return self._on_response(keys)
        if self.state is ChapState.DONE:
            if keys:
                raise self._fail("CHAP keys after authentication completed")
            return ChapStep([], True)
        raise self._fail("CHAP exchange already failed")

    def _on_algorithm(self, keys: dict[str, str]) -> ChapStep:
        if not keys:
            return ChapStep([], False)  # e.g. an empty PDU after AuthMethod; keep waiting for CHAP_A
        offer = keys.get("CHAP_A")
        if offer is None or set(keys) != {"CHAP_A"}:
            raise self._fail(f"expected CHAP_A, got {sorted(keys)}")
        if not self.credentials.userid or not self.credentials.password:
            raise self._fail("no CHAP credentials configured for this initiator")
        alg = _choose_algorithm(offer, self.algorithms)
        if alg is None:
            raise self._fail(f"no supported CHAP algorithm in {offer[:64]!r}")
        self.algorithm = alg
        self.identifier = self.random_bytes(1)[0]
        self.challenge = self.random_bytes(max(TARGET_CHALLENGE_LENGTH, alg.digest_size))
        self.state = ChapState.WAIT_RESPONSE
        return ChapStep(
            [
                ("CHAP_A", str(alg.value)),
                ("CHAP_I", str(self.identifier)),
                ("CHAP_C", encode_binary(self.challenge)),
            ],
            False,
        )

    def _on_response(self, keys: dict[str, str]) -> ChapStep:
        if not keys:
            return ChapStep([], False)
        name, response = keys.get("CHAP_N"), keys.get("CHAP_R")
        if name is None or response is None:
            raise self._fail("CHAP_N and CHAP_R required")
        extra = set(keys) - {"CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}
        if extra:
            raise self._fail(f"unexpected keys {sorted(extra)} in the CHAP response")
        assert self.algorithm is not None
        got = decode_binary(response)
        expected = chap_response(
            self.algorithm, self.identifier, self.credentials.password.encode(), self.challenge
        )
        name_ok = hmac.compare_digest(name.encode(), self.credentials.userid.encode())
        if not (hmac.compare_digest(got, expected) and name_ok):
            raise self._fail("CHAP_N/CHAP_R do not match the configured credentials")
        peer_id, peer_challenge = keys.get("CHAP_I"), keys.get("CHAP_C")
        if peer_id is None and peer_challenge is None:
            self.state = ChapState.DONE
            return ChapStep([], True)
        # mutual CHAP: the initiator authenticates the target
        if peer_id is None or peer_challenge is None:
            raise self._fail("mutual CHAP needs both CHAP_I and CHAP_C")
        ident = parse_number(peer_id)
        if ident is None or ident > 255:
            raise self._fail(f"bad CHAP_I {peer_id[:16]!r}")
        challenge = decode_binary(peer_challenge)
        if not MIN_CHALLENGE_LENGTH <= len(challenge) <= MAX_CHALLENGE_LENGTH:
            raise self._fail(f"initiator challenge length {len(challenge)} out of bounds")
        if challenge == self.challenge:
            # 12.1.3: a reflected challenge lets an attacker use the target as an oracle
            raise self._fail("initiator reused the target's challenge")
        if not self.credentials.mutual_userid or not self.credentials.mutual_password:
            raise self._fail("mutual CHAP requested but no target credentials configured")
        target_response = chap_response(
            self.algorithm, ident, self.credentials.mutual_password.encode(), challenge
        )
        self.mutual = True
        self.state = ChapState.DONE
        return ChapStep(
            [("CHAP_N", self.credentials.mutual_userid), ("CHAP_R", encode_binary(target_response))], True
        )
