"""Key negotiation (RFC 7143 6.2): the target as responder, driven by the key table in `target.iscsi.keys`.

Theory of operation
-------------------
The initiator offers keys; the target answers each one with the outcome of the key's result function
(`KeyKind`): the first of the offered list values it also supports, min/max of two numbers, AND/OR of two
booleans. Declarations (InitiatorName, SessionType, ...) are recorded without an answer, except
MaxRecvDataSegmentLength which is declarative per direction: the target answers with its own value.
Special answers (6.2): "NotUnderstood" for unknown and vendor keys, "Irrelevant" for keys that do not apply
(operational keys in a discovery session, leading-only keys on a non-leading connection, FirstBurstLength when
InitialR2T=Yes and ImmediateData=No), "Reject" for values that are malformed or outside the key's range, keys
sent by the wrong party, or no acceptable list value. A key offered twice in one login is a protocol error
(6.2: "Neither the initiator nor the target should attempt to declare or negotiate a parameter more than
once during login") and fails the login with Initiator Error.

Target offers (RFC 7143 6.2, 5.3): a key the initiator does not offer keeps its RFC default, unless the TPG
explicitly configures a value the RFC default does not satisfy (e.g. MaxBurstLength=131072, InitialR2T=No,
HeaderDigest=CRC32C). The target then offers such keys itself (`proposals()`), in its response to the
initiator's request to leave the operational stage, with T=0; the initiator must answer them in its next
request (`process()` treats a returning proposed key as that answer and checks it against the key's result
function), and only then can the login move on. An initiator that ignores the offers leaves the keys at their
RFC defaults (logged), rather than hanging the login. `LoginNegotiator` is used during login (one per connection);
`TextNegotiator` runs the full feature phase Text Request/Response exchange, including SendTargets and
continuation (C bit) in both directions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from target.iscsi import keys as K
from target.iscsi.keys import KeyDef, KeyKind, Sender, Use, ValueType
from target.iscsi.params import ConnectionParams, SessionParams
from target.pdu import text as textmod
from target.pdu.pdus import RESERVED_TAG, LoginStatus, TextRequest, TextResponse

#: LIO's defaults for the keys a TPG configures (iscsi_target_parameters.h INITIAL_*), RFC names.
LIO_DEFAULTS: dict[str, str] = {
    "AuthMethod": "CHAP,None",
    "HeaderDigest": "CRC32C,None",
    "DataDigest": "CRC32C,None",
    "MaxConnections": "1",
    "TargetAlias": "",
    "InitialR2T": "Yes",
    "ImmediateData": "Yes",
    "MaxRecvDataSegmentLength": "8192",
    "MaxXmitDataSegmentLength": "262144",
    "MaxBurstLength": "262144",
    "FirstBurstLength": "65536",
    "DefaultTime2Wait": "2",
    "DefaultTime2Retain": "20",
    "MaxOutstandingR2T": "1",
    "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes",
    "ErrorRecoveryLevel": "0",
    "TaskReporting": "RFC3720",
    "iSCSIProtocolLevel": "1",
    "IFMarker": "No",
    "OFMarker": "No",
    "RDMAExtensions": "No",
}

#: sanlab's own defaults where they differ from LIO's (used when the TPG's parameters do not set the key; a LIO
#: saveconfig.json written by targetcli lists every parameter, so an imported LIO configuration keeps LIO's).
#: MaxRecvDataSegmentLength: the target declares 256 KiB (LIO's MaxXmitDataSegmentLength, open-iscsi's own
#: default; RFC 7143 13.12 allows 512 to 2**24-1) instead of LIO's 8192: a 128 KiB write then travels as 64 KiB
#: of immediate data, one R2T and one 64 KiB Data-Out instead of 8 KiB, one R2T and fifteen 8 KiB Data-Outs
#: (docs/performance.md, "second pass"). The RFC default 8192 still applies to a peer that declares nothing.
SANLAB_DEFAULTS: dict[str, str] = {**LIO_DEFAULTS, "MaxRecvDataSegmentLength": "262144"}

#: Bounds on what a peer may send us in one login or one text exchange.
MAX_KEYS_PER_EXCHANGE = 256
MAX_TEXT_BYTES = 65536


class NegotiationError(Exception):
    """A negotiation problem that ends the login (or, in FFP, earns a Reject PDU)."""

    def __init__(self, status: LoginStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def target_settings(parameters: Mapping[str, str] | None = None) -> dict[str, str]:
    """The target's own values: sanlab's defaults (LIO's but for SANLAB_DEFAULTS) overlaid with the TPG's
    configured parameters."""
    merged = dict(SANLAB_DEFAULTS)
    if parameters:
        merged.update({k: str(v) for k, v in parameters.items()})
    return merged


# --------------------------------------------------------------------------- text data (key=value\0 ...)


def parse_pairs(data: bytes | memoryview) -> list[tuple[str, str]]:
    """Split login/text data into (key, value) pairs (RFC 7143 6.1). Malformed data raises NegotiationError."""
    if len(data) > MAX_TEXT_BYTES:
        raise NegotiationError(LoginStatus.INITIATOR_ERROR, "text data too long")
    try:
        pairs = textmod.parse_text(data)
    except textmod.TextError as exc:
        raise NegotiationError(LoginStatus.INITIATOR_ERROR, str(exc)) from exc
    if len(pairs) > MAX_KEYS_PER_EXCHANGE:
        raise NegotiationError(LoginStatus.INITIATOR_ERROR, "too many keys")
    return pairs


def encode_pairs(pairs: list[tuple[str, str]]) -> bytes:
    return textmod.encode_text(pairs)


# --------------------------------------------------------------------------- result functions (6.2.2)


def select_from_list(offered: list[str], supported: list[str]) -> str | None:
    """The first offered value the responder supports (RFC 7143 6.2.1), None if there is none."""
    for value in offered:
        if value in supported:
            return value
    return None


def result_min(offered: int, own: int) -> int:
    return min(offered, own)


def result_max(offered: int, own: int) -> int:
    return max(offered, own)


def result_and(offered: bool, own: bool) -> bool:
    return offered and own


def result_or(offered: bool, own: bool) -> bool:
    return offered or own


def _fmt_bool(value: bool) -> str:
    return K.YES if value else K.NO


def answer_for(keydef: KeyDef, offered: str, own: str | None) -> str:
    """The responder's answer to one offered value by the key's result function. Never raises.

    `own` is the target's value for the key (its list of supported values for list keys). Declarative keys
    answer with `own` (the target's own declaration) or, when there is none, echo nothing useful: callers
    handle declarative keys themselves; for them this returns `own` or Reject when the value is bad.
    """
    if keydef.fixed_answer is not None:
        return keydef.fixed_answer
    if len(offered.encode("utf-8", "surrogatepass")) > keydef.max_length:
        return K.REJECT
    kind = keydef.kind
    if kind is KeyKind.LIST:
        offered_values = K.split_list(offered)
        if not offered_values:
            return K.REJECT
        supported = K.split_list(own) if own is not None else list(keydef.values)
        supported = [v for v in supported if v in keydef.values] if keydef.values else supported
        chosen = select_from_list(offered_values, supported)
        return chosen if chosen is not None else K.REJECT
    if kind in (KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX):
        number = K.parse_number(offered)
        if number is None or not keydef.in_range(number):
            return K.REJECT
        mine = K.parse_number(own) if own is not None else None
        if mine is None:
            return str(number)
        mine = max(keydef.minimum, min(keydef.maximum, mine))
        fn = result_min if kind is KeyKind.NUMERICAL_MIN else result_max
        return str(fn(number, mine))
    if kind in (KeyKind.BOOLEAN_AND, KeyKind.BOOLEAN_OR):
        flag = K.parse_boolean(offered)
        if flag is None:
            return K.REJECT
        own_flag = K.parse_boolean(own) if own is not None else None
        if own_flag is None:
            return _fmt_bool(flag)
        fn2 = result_and if kind is KeyKind.BOOLEAN_AND else result_or
        return _fmt_bool(fn2(flag, own_flag))
    # declarative
    if keydef.vtype is ValueType.NUMBER:
        number = K.parse_number(offered)
        if number is None or not keydef.in_range(number):
            return K.REJECT
    elif keydef.vtype is ValueType.ENUM and offered not in keydef.values:
        return K.REJECT
    return own if own is not None else offered


def valid_declaration(keydef: KeyDef, value: str) -> bool:
    """Whether a declared value has the key's syntax (used for keys that get no answer)."""
    if len(value.encode("utf-8", "surrogatepass")) > keydef.max_length:
        return False
    if keydef.vtype is ValueType.NUMBER:
        number = K.parse_number(value)
        return number is not None and keydef.in_range(number)
    if keydef.vtype is ValueType.ENUM:
        return value in keydef.values
    return not any(ord(c) < 0x20 for c in value)


# --------------------------------------------------------------------------- login negotiation


@dataclass
class LoginOffer:
    """What one login PDU's keys amount to: answers to send and the security keys for the auth exchange."""

    answers: list[tuple[str, str]] = field(default_factory=list)
    security: dict[str, str] = field(default_factory=dict)


#: initiator declarations that may be repeated, unchanged, in later PDUs of one login
REPEATABLE_DECLARATIONS = frozenset({"InitiatorName", "InitiatorAlias", "TargetName", "SessionType"})


class LoginNegotiator:
    """Operational (and security-key routing) negotiation for one connection's login."""

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        leading: bool = True,
        discovery: bool = False,
        configured: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = dict(settings)
        self.leading = leading
        self.discovery = discovery
        #: the TPG's explicitly configured parameters: candidates for the target's own offers
        self.configured = {k: str(v) for k, v in (configured or {}).items()}
        #: keys the target offered itself and the values it offered, until the initiator answers
        self.proposed: dict[str, str] = {}
        #: whether the target has made its offers (once per login)
        self.proposals_made = False
        #: keys the initiator has sent in this login, with their values (6.2: at most once each)
        self.seen: dict[str, str] = {}
        #: negotiated outcomes and initiator declarations, by key
        self.values: dict[str, str] = {}
        #: whether the target has declared its MaxRecvDataSegmentLength yet
        self.declared_mrdsl = False

    def own(self, name: str) -> str | None:
        value = self.settings.get(name)
        if value is None:
            return K.KEYS[name].default if name in K.KEYS else None
        return value

    def process(self, pairs: list[tuple[str, str]], *, security_stage: bool) -> LoginOffer:
        """Answer one login PDU's (reassembled) keys. Raises NegotiationError for protocol errors."""
        offer = LoginOffer()
        for name, value in pairs:
            if name in self.seen:
                # libiscsi repeats its declarations (InitiatorName, SessionType, ...) in every security-stage
                # PDU of a CHAP exchange; LIO accepts an identical repeat, so do we. Anything else sent twice,
                # or a declaration that changes, is a protocol error.
                if name in REPEATABLE_DECLARATIONS and self.seen[name] == value:
                    continue
                raise NegotiationError(LoginStatus.INITIATOR_ERROR, f"key {name} sent twice")
            self.seen[name] = value
            if not K.valid_key_name(name):
                raise NegotiationError(LoginStatus.INITIATOR_ERROR, f"malformed key name {name[:64]!r}")
            keydef = K.lookup(name)
            if keydef is None:
                offer.answers.append((name, K.NOT_UNDERSTOOD))
                continue
            if name in self.proposed:
                # the initiator's answer to the target's own offer (6.2): no answer back
                self._take_answer(keydef, self.proposed.pop(name), value)
                continue
            if keydef.use is Use.SECURITY:
                if not security_stage:
                    # RFC 7143 6.3: security keys only in the security stage
                    raise NegotiationError(LoginStatus.INITIATOR_ERROR, f"{name} outside the security stage")
                offer.security[name] = value
                continue
            answer = self._answer(keydef, value)
            if answer is not None:
                offer.answers.append((name, answer))
        self._fix_burst_lengths(offer.answers)
        return offer

    # ---- the target's own offers

    def proposals(self) -> list[tuple[str, str]]:
        """The keys the target offers itself (once per login; see the module docstring): explicitly configured,
        negotiable keys the initiator did not offer whose RFC default the configured value does not satisfy."""
        if self.proposals_made:
            return []
        self.proposals_made = True
        out: list[tuple[str, str]] = []
        for name, value in self.configured.items():
            keydef = K.lookup(name)
            if keydef is None or name in self.seen or not self._may_offer(keydef, value):
                continue
            out.append((name, value))
        names = {n for n, _ in out}
        # 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength; a smaller MaxBurstLength drags it along
        burst = K.parse_number(dict(out).get("MaxBurstLength", "") or "")
        if burst is not None and "FirstBurstLength" not in self.seen and "FirstBurstLength" not in names:
            first = K.parse_number(self.own("FirstBurstLength") or "") or 65536
            if first > burst:
                out.append(("FirstBurstLength", str(burst)))
        self.proposed = dict(out)
        return out

    def _may_offer(self, keydef: KeyDef, value: str) -> bool:
        if (
            Sender.TARGET not in keydef.senders
            or keydef.kind is KeyKind.DECLARATIVE
            or keydef.fixed_answer is not None
            or keydef.use not in (Use.LO, Use.IO)
            or (keydef.leading_only and not self.leading)
            or (keydef.irrelevant_in_discovery and self.discovery)
            or keydef.default is None
        ):
            return False
        if keydef.kind is KeyKind.LIST:
            tokens = K.split_list(value)
            valid = bool(tokens) and all(t in keydef.values for t in tokens)
            return valid and keydef.default not in tokens
        if keydef.kind in (KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX):
            number = K.parse_number(value)
            return number is not None and keydef.in_range(number) and number != K.parse_number(keydef.default)
        flag = K.parse_boolean(value)
        return flag is not None and flag != K.parse_boolean(keydef.default)

    @property
    def offers_pending(self) -> bool:
        """The target offered keys the initiator has not answered yet."""
        return bool(self.proposed)

    def withdraw_offers(self) -> list[str]:
        """The initiator went on without answering: the offered keys keep their RFC defaults."""
        names = list(self.proposed)
        self.proposed.clear()
        return names

    def _take_answer(self, keydef: KeyDef, offered: str, answer: str) -> None:
        """Check the initiator's answer to our offer against the key's result function (6.2.2)."""
        name = keydef.name
        if answer in (K.REJECT, K.IRRELEVANT, K.NOT_UNDERSTOOD):
            self.values.pop(name, None)  # the key keeps its RFC default
            return
        kind = keydef.kind
        ok = False
        if kind is KeyKind.LIST:
            ok = answer in K.split_list(offered)
        elif kind in (KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX):
            mine, theirs = K.parse_number(offered), K.parse_number(answer)
            if mine is not None and theirs is not None and keydef.in_range(theirs):
                ok = theirs <= mine if kind is KeyKind.NUMERICAL_MIN else theirs >= mine
        else:
            mine_b, theirs_b = K.parse_boolean(offered), K.parse_boolean(answer)
            if mine_b is not None and theirs_b is not None:
                # AND: our No forces No; OR: our Yes forces Yes
                forced = kind is not KeyKind.BOOLEAN_AND
                ok = theirs_b == forced if mine_b == forced else True
        if not ok:
            raise NegotiationError(
                LoginStatus.INITIATOR_ERROR,
                f"answer {answer[:32]!r} to the target's {name}={offered} is invalid",
            )
        self.values[name] = answer

    def _answer(self, keydef: KeyDef, value: str) -> str | None:
        name = keydef.name
        if Sender.INITIATOR not in keydef.senders:
            return K.REJECT
        if keydef.use is Use.FFP:
            return K.REJECT  # SendTargets in login
        if keydef.leading_only and not self.leading and name != "SessionType":
            return K.IRRELEVANT
        if keydef.irrelevant_in_discovery and self.discovery:
            return K.IRRELEVANT
        if name == "MaxRecvDataSegmentLength":
            # 13.12: declarative per direction; the initiator's value bounds what we send, and we answer with
            # what we receive.
            if not valid_declaration(keydef, value):
                return K.REJECT
            self.values[name] = str(K.parse_number(value))
            self.declared_mrdsl = True
            return self.own(name)
        if keydef.kind is KeyKind.DECLARATIVE and keydef.fixed_answer is None:
            if not valid_declaration(keydef, value):
                return K.REJECT
            self.values[name] = value
            return None if keydef.no_answer else value
        answer = answer_for(keydef, value, self.own(name))
        if answer not in (K.REJECT, K.IRRELEVANT, K.NOT_UNDERSTOOD):
            self.values[name] = answer
        return answer

    def _fix_burst_lengths(self, answers: list[tuple[str, str]]) -> None:
        """13.14: FirstBurstLength is irrelevant when InitialR2T=Yes and ImmediateData=No, and MUST NOT exceed
        MaxBurstLength."""
        for i, (name, answer) in enumerate(answers):
            if name != "FirstBurstLength" or answer in (K.REJECT, K.IRRELEVANT):
                continue
            if self.current_bool("InitialR2T") and not self.current_bool("ImmediateData"):
                answers[i] = (name, K.IRRELEVANT)
                self.values.pop(name, None)
                continue
            first, burst = K.parse_number(answer), self.current_int("MaxBurstLength")
            if first is not None and first > burst:
                answers[i] = (name, str(burst))
                self.values[name] = str(burst)

    def current_bool(self, name: str) -> bool:
        parsed = K.parse_boolean(self.values.get(name, K.KEYS[name].default or ""))
        return bool(parsed)

    def current_int(self, name: str) -> int:
        parsed = K.parse_number(self.values.get(name, K.KEYS[name].default or "0"))
        return parsed if parsed is not None else 0

    def target_declarations(self) -> list[tuple[str, str]]:
        """The target's MaxRecvDataSegmentLength declaration if not yet made (13.12)."""
        if self.declared_mrdsl:
            return []
        self.declared_mrdsl = True
        return [("MaxRecvDataSegmentLength", self.own("MaxRecvDataSegmentLength") or "8192")]

    # ---- results

    def connection_params(self, cid: int, *, auth_method: str = "None") -> ConnectionParams:
        recv = K.parse_number(self.own("MaxRecvDataSegmentLength") or "") or 8192
        xmit_cap = (
            K.parse_number(self.settings.get("MaxXmitDataSegmentLength", "") or "") or K.MAX_DATA_SEGMENT
        )
        peer = K.parse_number(self.values.get("MaxRecvDataSegmentLength", "8192")) or 8192
        return ConnectionParams(
            cid=cid,
            max_recv_data_segment_length=recv,
            max_xmit_data_segment_length=min(peer, xmit_cap),
            header_digest=self.values.get("HeaderDigest") == "CRC32C",
            data_digest=self.values.get("DataDigest") == "CRC32C",
            auth_method=auth_method,
            values=dict(self.values),
        )

    def session_params(
        self,
        *,
        initiator_name: str,
        target_name: str,
        tpg_tag: int,
        isid: int,
        tsih: int,
        target_alias: str = "",
    ) -> SessionParams:
        return SessionParams.from_values(
            self.values,
            initiator_name=initiator_name,
            target_name=target_name,
            tpg_tag=tpg_tag,
            isid=isid,
            tsih=tsih,
            target_alias=target_alias,
        )


# --------------------------------------------------------------------------- full feature phase text


#: SendTargets resolver: value -> pairs to return, or None for "SendTargets=Reject".
SendTargetsFn = Callable[[str], list[tuple[str, str]] | None]

MAX_TEXT_CONTINUATIONS = 64


@dataclass(frozen=True, slots=True)
class TextReply:
    """One Text Response to send; the connection fills in the sequence numbers with `to_pdu`."""

    itt: int
    ttt: int
    final: bool
    cont: bool
    data: bytes

    def to_pdu(self, *, statsn: int, exp_cmdsn: int, max_cmdsn: int, lun: int = 0) -> TextResponse:
        return TextResponse(
            itt=self.itt,
            statsn=statsn,
            exp_cmdsn=exp_cmdsn,
            max_cmdsn=max_cmdsn,
            ttt=self.ttt,
            lun=lun,
            final=self.final,
            cont=self.cont,
            data=self.data,
        )


@dataclass(frozen=True, slots=True)
class TextOutcome:
    """The result of one Text Request: a reply, or a protocol error (send Reject, reason PROTOCOL_ERROR)."""

    reply: TextReply | None
    error: str = ""
    #: new connection parameters when this exchange changed them (apply after sending the reply)
    connection_params: ConnectionParams | None = None


class TextNegotiator:
    """Text Request/Response exchanges in the full feature phase (RFC 7143 11.10, 11.11, 6.2).

    One per connection. Keys that may be renegotiated in FFP are the "ALL" ones (MaxRecvDataSegmentLength,
    InitiatorAlias) plus SendTargets; LO/IO keys get Reject, unknown and vendor keys NotUnderstood.
    Long requests arrive in several PDUs with C=1 (each gets an empty response carrying a TTT); long answers
    leave in several responses with C=1 and a TTT, each released by an empty Text Request with that TTT.
    """

    def __init__(
        self,
        settings: Mapping[str, str],
        connection: ConnectionParams,
        session: SessionParams,
        *,
        send_targets: SendTargetsFn | None = None,
        max_text_bytes: int = MAX_TEXT_BYTES,
        on_params: Callable[[ConnectionParams], None] | None = None,
    ) -> None:
        self.on_params = on_params
        self.settings = dict(settings)
        self.connection = connection
        self.session = session
        self.send_targets = send_targets
        self.max_text_bytes = max_text_bytes
        self._itt: int | None = None
        self._ttt: int = RESERVED_TAG
        self._incoming = bytearray()
        self._outgoing: list[bytes] = []
        self._final_requested = True
        self._steps = 0

    def _new_ttt(self) -> int:
        while True:
            ttt = int.from_bytes(os.urandom(4), "big")
            if ttt != RESERVED_TAG:
                return ttt

    def _reset(self) -> None:
        self._itt = None
        self._ttt = RESERVED_TAG
        self._incoming.clear()
        self._outgoing.clear()
        self._steps = 0

    def receive(self, req: TextRequest) -> TextOutcome:
        if req.final and req.cont:
            self._reset()
            return TextOutcome(None, "Text Request with both F and C set")  # 11.10.2
        if req.ttt == RESERVED_TAG:
            # a new exchange (or the initiator reset the pending one, 11.10.4)
            self._reset()
            self._itt = req.itt
        elif self._itt is None or req.ttt != self._ttt or req.itt != self._itt:
            self._reset()
            return TextOutcome(None, "Text Request with an unknown Target Transfer Tag")
        self._steps += 1
        if self._steps > MAX_TEXT_CONTINUATIONS:
            self._reset()
            return TextOutcome(None, "text exchange too long")
        if self._outgoing:
            if req.data:
                self._reset()
                return TextOutcome(None, "data in a Text Request that continues a response")
            return TextOutcome(self._next_chunk(req.itt))
        self._incoming += bytes(req.data)
        if len(self._incoming) > self.max_text_bytes:
            self._reset()
            return TextOutcome(None, "text request too long")
        if req.cont:
            self._ttt = self._new_ttt()
            return TextOutcome(TextReply(req.itt, self._ttt, False, False, b""))
        try:
            pairs = parse_pairs(bytes(self._incoming))
        except NegotiationError as exc:
            self._reset()
            return TextOutcome(None, exc.message)
        self._incoming.clear()
        self._final_requested = req.final
        if textmod.find_duplicates(pairs):
            self._reset()
            return TextOutcome(None, "a key offered twice in one Text Request")
        before = self.connection
        answers = self.answer(pairs)
        params = self.connection if self.connection is not before else None
        # split by what the initiator accepted before this exchange (a new value applies afterwards)
        limit = max(512, before.max_xmit_data_segment_length)
        self._outgoing = textmod.split_text(encode_pairs(answers), limit)
        return TextOutcome(self._next_chunk(req.itt), connection_params=params)

    def _next_chunk(self, itt: int) -> TextReply:
        chunk = self._outgoing.pop(0)
        if self._outgoing:
            self._ttt = self._new_ttt()
            return TextReply(itt, self._ttt, False, True, chunk)
        if self._final_requested:
            self._itt = None
            self._ttt = RESERVED_TAG
            self._steps = 0
            return TextReply(itt, RESERVED_TAG, True, False, chunk)
        # 11.11.1: a response to F=0 keeps F=0 and carries a TTT so the initiator can continue
        self._ttt = self._new_ttt()
        return TextReply(itt, self._ttt, False, False, chunk)

    def answer(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Answer one whole (reassembled) Text Request's keys. Never raises.

        Usable directly as the connection's text handler when the connection runs the PDU exchange itself.
        A changed MaxRecvDataSegmentLength updates `self.connection` and calls `on_params`.
        """
        answers: list[tuple[str, str]] = []
        seen: set[str] = set()
        params: ConnectionParams | None = None
        for name, value in pairs[:MAX_KEYS_PER_EXCHANGE]:
            if name in seen:
                answers.append((name, K.REJECT))  # 6.2: a key at most once per negotiation
                continue
            seen.add(name)
            keydef = K.lookup(name)
            if keydef is None or not K.valid_key_name(name):
                answers.append((name, K.NOT_UNDERSTOOD))
                continue
            if name == "SendTargets":
                result = self.send_targets(value) if self.send_targets is not None else None
                if result is None:
                    answers.append((name, K.REJECT))
                else:
                    answers.extend(result)
                continue
            if Sender.INITIATOR not in keydef.senders or keydef.use is not Use.ALL:
                answers.append((name, K.REJECT))
                continue
            if name == "MaxRecvDataSegmentLength":
                if not valid_declaration(keydef, value):
                    answers.append((name, K.REJECT))
                    continue
                peer = K.parse_number(value) or 8192
                cap = K.parse_number(self.settings.get("MaxXmitDataSegmentLength", "") or "") or peer
                values = dict(self.connection.values)
                values[name] = str(peer)
                params = ConnectionParams(
                    cid=self.connection.cid,
                    max_recv_data_segment_length=self.connection.max_recv_data_segment_length,
                    max_xmit_data_segment_length=min(peer, cap),
                    header_digest=self.connection.header_digest,
                    data_digest=self.connection.data_digest,
                    auth_method=self.connection.auth_method,
                    values=values,
                )
                answers.append((name, str(self.connection.max_recv_data_segment_length)))
                continue
            # InitiatorAlias: a declaration, no answer
            if not valid_declaration(keydef, value):
                answers.append((name, K.REJECT))
        if params is not None:
            self.connection = params
            if self.on_params is not None:
                self.on_params(params)
        return answers
