"""The login phase of one connection, target side (RFC 7143 6.3, 11.12, 11.13), sans-I/O.

Theory of operation
-------------------
`LoginMachine.receive(LoginRequest) -> LoginStep` is called for every Login Request of the connection; the
step says which Login Responses to send, and whether the login failed (send, then close) or completed (send,
then enter the full feature phase with `step.result`).

Stages (CSG/NSG, 11.12.3): the first request starts in the security stage (0) or, when it skips
authentication, in the operational stage (1). A request with T=1 asks to move to NSG; the target agrees
(T=1, same NSG) once its side of the stage is done: in the security stage when the chosen AuthMethod has
completed, in the operational stage at once, unless the TPG configures values the RFC defaults do not
satisfy for keys the initiator did not offer: then the target offers those keys with T=0 and agrees to the
transition once the initiator has answered (`LoginNegotiator.proposals`, RFC 7143 6.2). The response that moves to the full feature phase (NSG=3) carries the TSIH.

    stage      request                          target answer
    --------   ------------------------------   ---------------------------------------------------------
    first      identity keys                    authorize (target, TPG on this portal, ACL, session/TSIH)
    SECURITY   AuthMethod / CHAP_* keys         AuthMethod choice, CHAP steps (`target.iscsi.chap`)
    SECURITY   T=1 before auth done             T=0 (stay); when auth is required and never ran: 02/01
    OPER.      operational keys                 answers (`target.iscsi.negotiation.LoginNegotiator`)
    any        C=1 (text continues)             empty response, T=0, until the text is complete
    any        response text > 8192 bytes       response with C=1, then one part per empty request
    any        T=1, NSG=3, stage done           final response, TSIH, `LoginResult`

Every problem ends the login with a status class/detail (11.13.5): bad versions 02/05, missing
InitiatorName/TargetName 02/07, unknown target 02/03, TPG disabled 02/04, not authorized 02/02, CHAP
failure 02/01, unknown TSIH 02/0A, too many connections 02/06, unknown SessionType 02/09, any other
protocol error (changed ITT/ISID/CID/TSIH/versions, bad stage transitions, a key sent twice, T and C both
set, too many PDUs or too much text) 02/00.

ITT, ISID, TSIH, CID and the versions must stay the same across the login's requests (LIO checks the same).
StatSN starts at a random value (or `initial_statsn`) and increments with each response (11.13.4); ExpCmdSN
is the login's CmdSN (login requests are immediate), MaxCmdSN = CmdSN + depth - 1.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from target.config.model import AclConfig, AuthConfig, Config, TargetConfig, TpgConfig, dynamic_acl
from target.iscsi import keys as K
from target.iscsi.chap import ChapAuthenticator, ChapError
from target.iscsi.discovery import attr_int, target_alias
from target.iscsi.negotiation import (
    MAX_TEXT_BYTES,
    LoginNegotiator,
    NegotiationError,
    encode_pairs,
    parse_pairs,
    select_from_list,
    target_settings,
)
from target.iscsi.params import ConnectionParams, SessionParams, SessionType
from target.pdu import text as textmod
from target.pdu.pdus import LoginRequest, LoginResponse, LoginStatus, Stage

log = logging.getLogger("target.iscsi.login")

ISCSI_VERSION = 0x00  # RFC 7143 11.12.4: the only version defined
LOGIN_MAX_SEGMENT = 8192  # data segment bound in both directions during login (RFC 7143 13.12)
MAX_LOGIN_PDUS = 64
MAX_NAME_LENGTH = 223  # RFC 3722 / 7143 4.2.7.1: iSCSI names are at most 223 bytes
DEFAULT_LOGIN_TIMEOUT_S = 15  # LIO TA_LOGIN_TIMEOUT
DEFAULT_CMDSN_DEPTH = 64  # LIO TA_DEFAULT_CMDSN_DEPTH


class SessionInfo(Protocol):
    """What the login needs to know about an existing session (implemented by the ffp team's Session)."""

    @property
    def tsih(self) -> int: ...
    @property
    def initiator_name(self) -> str: ...
    @property
    def isid(self) -> int: ...
    @property
    def target_name(self) -> str: ...
    @property
    def tpg_tag(self) -> int: ...
    @property
    def connection_count(self) -> int: ...
    @property
    def cids(self) -> set[int]: ...
    @property
    def params(self) -> SessionParams: ...


class SessionLookup(Protocol):
    def find(self, initiator_name: str, isid: int, target_name: str, tpg_tag: int) -> SessionInfo | None: ...
    def by_tsih(self, tsih: int) -> SessionInfo | None: ...
    def allocate_tsih(self) -> int: ...


class LoginKind(enum.Enum):
    """What the completed login does to the session table (RFC 7143 6.3.5, 5.3.4)."""

    NEW_SESSION = "new session"
    SESSION_REINSTATEMENT = "session reinstatement"  # same ISID, TSIH 0: the caller closes the old session
    ADD_CONNECTION = "add connection"  # TSIH of an existing session, new CID
    CONNECTION_REINSTATEMENT = "connection reinstatement"  # TSIH of an existing session, CID in use


class LoginFailure(Exception):
    def __init__(self, status: LoginStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LoginResult:
    session_type: SessionType
    kind: LoginKind
    initiator_name: str
    initiator_alias: str
    isid: int
    tsih: int
    cid: int
    target_name: str  # "" for discovery sessions
    tpg_tag: int  # 0 for discovery sessions
    target: TargetConfig | None
    tpg: TpgConfig | None
    acl: AclConfig | None
    dynamic_acl: bool  # the ACL was generated (generate_node_acls=1, demo mode)
    session_params: SessionParams
    connection_params: ConnectionParams
    #: the session being reinstated (SESSION_REINSTATEMENT) or joined (ADD_/CONNECTION_REINSTATEMENT)
    existing: SessionInfo | None
    #: the session's initial ExpCmdSN (the leading login's CmdSN) and its command window depth
    exp_cmdsn: int
    cmdsn_depth: int
    #: the StatSN of the next response on this connection (after the final Login Response)
    next_statsn: int
    #: ExpStatSN the initiator acknowledged in its last login request (connection reinstatement)
    exp_statsn: int
    auth_method: str
    mutual_chap: bool = False

    @property
    def is_new_session(self) -> bool:
        return self.kind in (LoginKind.NEW_SESSION, LoginKind.SESSION_REINSTATEMENT)

    @property
    def discovery(self) -> bool:
        return self.session_type is SessionType.DISCOVERY


@dataclass
class LoginStep:
    responses: list[LoginResponse] = field(default_factory=list)
    complete: bool = False
    failed: bool = False
    result: LoginResult | None = None
    status: LoginStatus = LoginStatus.SUCCESS
    reason: str = ""


def _norm_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def portal_serves(portal_ip: str, portal_port: int, local: tuple[str, int]) -> bool:
    """Whether a configured portal covers the local address/port a connection arrived on."""
    if portal_port != local[1]:
        return False
    if portal_ip == "::" or portal_ip == "":
        return True  # dual-stack wildcard
    local_addr = _norm_ip(local[0])
    if portal_ip == "0.0.0.0":
        return isinstance(local_addr, ipaddress.IPv4Address)
    return local_addr is not None and _norm_ip(portal_ip) == local_addr


def _mask32(n: int) -> int:
    return n & 0xFFFFFFFF


class LoginMachine:
    """One connection's login phase. See the module docstring."""

    def __init__(
        self,
        config: Config,
        portal: tuple[str, int],
        sessions: SessionLookup,
        *,
        initiator_address: tuple[str, int] | None = None,
        initial_statsn: int | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.portal = portal
        self.sessions = sessions
        self.initiator_address = initiator_address
        self.random_bytes = random_bytes
        self.statsn = initial_statsn if initial_statsn is not None else int.from_bytes(random_bytes(4), "big")
        self.stage: Stage | None = None
        self.first: LoginRequest | None = None
        self.done = False
        self.pdus = 0
        self.text_bytes = 0
        self._text = textmod.TextAssembler(MAX_TEXT_BYTES)
        self._out_parts: list[bytes] = []
        self._out_final: tuple[bool, int, LoginResult | None] = (False, 0, None)
        # identity and authorization, fixed by the first complete request
        self.session_type = SessionType.NORMAL
        self.initiator_name = ""
        self.target: TargetConfig | None = None
        self.tpg: TpgConfig | None = None
        self.acl: AclConfig | None = None
        self.dynamic_acl = False
        self.kind = LoginKind.NEW_SESSION
        self.existing: SessionInfo | None = None
        self.auth_required = False
        self.credentials = AuthConfig()
        self.auth_method: str | None = None
        self.chap: ChapAuthenticator | None = None
        self.negotiator: LoginNegotiator | None = None
        self.declared_identity = False
        self.declared_alias = False
        self.last_exp_statsn = 0

    # ------------------------------------------------------------------ public

    @property
    def timeout_s(self) -> int:
        """How long the whole login may take (TPG login_timeout, else settings login_timeout_s, else 15)."""
        if self.tpg is not None and "login_timeout" in self.tpg.attributes:
            return attr_int(self.tpg.attributes, "login_timeout", DEFAULT_LOGIN_TIMEOUT_S)
        return attr_int(self.config.settings, "login_timeout_s", DEFAULT_LOGIN_TIMEOUT_S)

    def expire(self) -> LoginStep:
        """The login timer ran out: close the connection without a response (LIO does the same)."""
        self.done = True
        return LoginStep(failed=True, status=LoginStatus.INITIATOR_ERROR, reason="login timed out")

    def receive(self, req: LoginRequest) -> LoginStep:
        if self.done:
            return LoginStep(failed=True, status=LoginStatus.INITIATOR_ERROR, reason="login already finished")
        try:
            return self._receive(req)
        except LoginFailure as exc:
            return self._fail(req, exc.status, exc.message)
        except NegotiationError as exc:
            return self._fail(req, exc.status, exc.message)
        except ChapError as exc:
            return self._fail(req, LoginStatus.AUTHENTICATION_FAILURE, str(exc))
        except Exception as exc:  # a bug must not take the server down: answer Target Error (03/00)
            log.exception("login machine failed on %s", req)
            return self._fail(req, LoginStatus.TARGET_ERROR, f"internal error: {exc!r}")

    def malformed(self, bhs: bytes | memoryview, reason: str) -> LoginStep:
        """A Login Request the codec could not decode (e.g. T and C both set, 11.12.2): answer Initiator Error
        (02/00) using the ITT, ISID and CmdSN of its raw BHS, and end the login."""
        raw = bytes(bhs[:48]).ljust(48, b"\0")
        req = LoginRequest(
            itt=int.from_bytes(raw[16:20], "big"),
            isid=int.from_bytes(raw[8:14], "big"),
            tsih=int.from_bytes(raw[14:16], "big"),
            cid=int.from_bytes(raw[20:22], "big"),
            cmdsn=int.from_bytes(raw[24:28], "big"),
            exp_statsn=int.from_bytes(raw[28:32], "big"),
            csg=(raw[1] >> 2) & 0x3,
            nsg=raw[1] & 0x3,
        )
        if self.done:
            return LoginStep(failed=True, status=LoginStatus.INITIATOR_ERROR, reason=reason)
        return self._fail(req, LoginStatus.INITIATOR_ERROR, reason)

    # ------------------------------------------------------------------ responses

    def _response(
        self,
        req: LoginRequest,
        *,
        data: bytes = b"",
        transit: bool = False,
        cont: bool = False,
        nsg: int = 0,
        tsih: int | None = None,
        status: LoginStatus = LoginStatus.SUCCESS,
    ) -> LoginResponse:
        first = self.first or req
        depth = self._cmdsn_depth()
        csg = self.stage if self.stage is not None else (req.csg if req.csg in (0, 1) else 0)
        resp = LoginResponse(
            itt=first.itt,
            isid=first.isid,
            tsih=first.tsih if tsih is None else tsih,
            statsn=self.statsn,
            exp_cmdsn=_mask32(req.cmdsn),
            max_cmdsn=_mask32(req.cmdsn + depth - 1),
            csg=int(csg),
            nsg=nsg,
            transit=transit,
            cont=cont,
            version_max=ISCSI_VERSION,
            version_active=ISCSI_VERSION,
            status_class=status.status_class,
            status_detail=status.status_detail,
            data=data,
        )
        self.statsn = _mask32(self.statsn + 1)
        return resp

    def _fail(self, req: LoginRequest, status: LoginStatus, reason: str) -> LoginStep:
        self.done = True
        resp = self._response(req, status=status, tsih=0 if self.first is None else None)
        return LoginStep(responses=[resp], failed=True, status=status, reason=reason)

    # ------------------------------------------------------------------ the state machine

    def _check_pdu(self, req: LoginRequest) -> None:
        self.pdus += 1
        if self.pdus > MAX_LOGIN_PDUS:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, "too many login PDUs")
        if req.transit and req.cont:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, "T and C both set (11.12.2)")
        if len(req.data) > LOGIN_MAX_SEGMENT:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, "login data segment over 8192 bytes")
        if req.csg not in (Stage.SECURITY, Stage.OPERATIONAL):
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, f"invalid CSG {req.csg}")
        if req.transit and (req.nsg not in (Stage.OPERATIONAL, Stage.FULL_FEATURE) or req.nsg <= req.csg):
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, f"invalid NSG {req.nsg} from CSG {req.csg}")
        if self.first is None:
            # 11.12.4: we speak version 0 only
            if req.version_min > ISCSI_VERSION or req.version_max < req.version_min:
                raise LoginFailure(LoginStatus.UNSUPPORTED_VERSION, "no common iSCSI version")
            self.first = req
            self.stage = Stage(req.csg)
            return
        first = self.first
        changed = [
            name
            for name, a, b in (
                ("ITT", req.itt, first.itt),
                ("ISID", req.isid, first.isid),
                ("TSIH", req.tsih, first.tsih),
                ("CID", req.cid, first.cid),
                ("VersionMax", req.version_max, first.version_max),
                ("VersionMin", req.version_min, first.version_min),
            )
            if a != b
        ]
        if changed:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, f"login request changed {', '.join(changed)}")
        if req.csg != self.stage:
            raise LoginFailure(
                LoginStatus.INITIATOR_ERROR, f"CSG {req.csg} but the login is in stage {self.stage}"
            )

    def _receive(self, req: LoginRequest) -> LoginStep:
        self._check_pdu(req)
        self.last_exp_statsn = req.exp_statsn
        if self._out_parts:
            # 11.13.2 / 6.1: the initiator collects our continued text with empty requests
            if req.data or req.cont:
                raise LoginFailure(LoginStatus.INITIATOR_ERROR, "data while the target's text continues")
            return self._emit_next(req)
        try:
            whole = self._text.add(req.data, req.cont)
        except textmod.TextError as exc:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, str(exc)) from exc
        self.text_bytes += len(req.data)
        if self.text_bytes > MAX_TEXT_BYTES:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, "login text too long")
        if whole is None:
            # more text follows: acknowledge with an empty response (T=0)
            return LoginStep(responses=[self._response(req, nsg=req.nsg)])
        pairs = parse_pairs(whole)
        if self.negotiator is None:
            self._start(req, pairs)
        assert self.negotiator is not None
        assert self.stage is not None
        offer = self.negotiator.process(pairs, security_stage=self.stage is Stage.SECURITY)
        answers: list[tuple[str, str]] = []
        if self.stage is Stage.SECURITY:
            answers.extend(self._security(offer.security))
        elif self.auth_required and self.auth_method is None:
            # first request in the operational stage although the target requires authentication
            raise LoginFailure(LoginStatus.AUTHENTICATION_FAILURE, "authentication required")
        answers.extend(self._declarations())
        answers.extend(offer.answers)
        if self.stage is Stage.OPERATIONAL and self.negotiator.offers_pending:
            # 6.2: the initiator had to answer our offers in this request; it did not, so they lapse
            lapsed = self.negotiator.withdraw_offers()
            log.warning("initiator %s did not answer the target's offer of %s", self.initiator_name, lapsed)
        transit = req.transit and self._stage_done()
        if transit and self.stage is Stage.OPERATIONAL:
            # the initiator is done offering: the target offers what it needs and holds the transition until
            # the initiator has answered (RFC 7143 6.2, 5.3)
            proposals = self.negotiator.proposals()
            if proposals:
                log.debug("offering %s to %s", proposals, self.initiator_name)
                answers.extend(proposals)
                transit = False
        if self.stage is Stage.SECURITY and req.transit and not transit and self._auth_impossible():
            raise LoginFailure(LoginStatus.AUTHENTICATION_FAILURE, "authentication required")
        if self.stage is Stage.OPERATIONAL or (transit and req.nsg == Stage.FULL_FEATURE):
            # 13.12: the target declares what it receives (once, in the operational stage)
            answers.extend(self.negotiator.target_declarations())
        return self._emit(req, encode_pairs(answers), transit, req.nsg)

    # ---- first request: identity, authorization, session checks

    def _start(self, req: LoginRequest, pairs: list[tuple[str, str]]) -> None:
        keys = dict(pairs)  # duplicates are caught by the negotiator right after
        stype = keys.get("SessionType", "Normal")
        if stype not in ("Normal", "Discovery"):
            raise LoginFailure(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, f"SessionType {stype[:32]!r}")
        self.session_type = SessionType(stype)
        name = keys.get("InitiatorName", "")
        if not name:
            raise LoginFailure(LoginStatus.MISSING_PARAMETER, "InitiatorName missing")
        if len(name.encode()) > MAX_NAME_LENGTH:
            raise LoginFailure(LoginStatus.INITIATOR_ERROR, "InitiatorName too long")
        self.initiator_name = name
        if self.session_type is SessionType.NORMAL:
            target_name = keys.get("TargetName", "")
            if not target_name:
                raise LoginFailure(LoginStatus.MISSING_PARAMETER, "TargetName missing")
            self._authorize_normal(target_name)
        else:
            self._authorize_discovery()
        self._check_session(req)
        leading = self.kind in (LoginKind.NEW_SESSION, LoginKind.SESSION_REINSTATEMENT)
        settings = target_settings(self.tpg.parameters if self.tpg is not None else None)
        if self.session_type is SessionType.DISCOVERY:
            settings.pop("TargetAlias", None)
        self.negotiator = LoginNegotiator(
            settings,
            leading=leading,
            discovery=self.session_type is SessionType.DISCOVERY,
            configured=self.tpg.parameters if self.tpg is not None else None,
        )

    def _authorize_discovery(self) -> None:
        creds = self.config.discovery_auth
        self.auth_required = self.config.discovery_auth_enforced
        self.credentials = creds

    def _authorize_normal(self, target_name: str) -> None:
        wanted = target_name.lower()
        target = next((t for t in self.config.targets if t.wwn.lower() == wanted), None)
        if target is None:
            raise LoginFailure(LoginStatus.NOT_FOUND, f"no target {target_name[:80]!r}")
        serving = [
            tpg for tpg in target.tpgs if any(portal_serves(p.ip, p.port, self.portal) for p in tpg.portals)
        ]
        enabled = [tpg for tpg in serving if tpg.enable]
        if not enabled:
            if serving:
                raise LoginFailure(LoginStatus.TARGET_REMOVED, "the TPG serving this portal is disabled")
            raise LoginFailure(LoginStatus.NOT_FOUND, "the target is not served on this portal")
        tpg = enabled[0]
        self.target, self.tpg = target, tpg
        wanted_acl = self.initiator_name.lower()
        acl = next((a for a in tpg.node_acls if a.node_wwn.lower() == wanted_acl), None)
        if acl is None:
            if attr_int(tpg.attributes, "generate_node_acls", 0) != 1:
                raise LoginFailure(LoginStatus.AUTHORIZATION_FAILURE, "initiator not in the TPG's ACLs")
            acl = self._demo_acl(tpg)
            self.dynamic_acl = True
        self.acl = acl
        required = attr_int(tpg.attributes, "authentication", 0) == 1
        acl_setting = attr_int(acl.attributes, "authentication", -1)
        if acl_setting in (0, 1):
            required = acl_setting == 1
        self.auth_required = required
        # ACL credentials, else the TPG's (LIO's demo-mode auth)
        self.credentials = acl.auth if acl.auth.enabled else tpg.auth

    def _demo_acl(self, tpg: TpgConfig) -> AclConfig:
        protect = attr_int(tpg.attributes, "demo_mode_write_protect", 1) == 1
        return dynamic_acl(tpg, self.initiator_name, protect)

    def _check_session(self, req: LoginRequest) -> None:
        target_name = self.target.wwn if self.target is not None else ""
        tpg_tag = self.tpg.tag if self.tpg is not None else 0
        if req.tsih == 0:
            existing = self.sessions.find(self.initiator_name, req.isid, target_name, tpg_tag)
            self.existing = existing
            self.kind = LoginKind.NEW_SESSION if existing is None else LoginKind.SESSION_REINSTATEMENT
            return
        session = self.sessions.by_tsih(req.tsih)
        if (
            session is None
            or session.initiator_name.lower() != self.initiator_name.lower()
            or session.isid != req.isid
            or session.params.session_type is not self.session_type
        ):
            raise LoginFailure(LoginStatus.SESSION_DOES_NOT_EXIST, f"no session with TSIH {req.tsih}")
        if session.target_name.lower() != target_name.lower() or session.tpg_tag != tpg_tag:
            raise LoginFailure(LoginStatus.CANT_INCLUDE_IN_SESSION, "connection is for another target/TPG")
        self.existing = session
        if req.cid in session.cids:
            self.kind = LoginKind.CONNECTION_REINSTATEMENT
        elif session.connection_count >= session.params.max_connections:
            raise LoginFailure(LoginStatus.TOO_MANY_CONNECTIONS, "MaxConnections reached")
        else:
            self.kind = LoginKind.ADD_CONNECTION

    # ---- security stage

    def _supported_methods(self) -> list[str]:
        have_chap = bool(self.credentials.userid and self.credentials.password)
        if self.auth_required:
            return ["CHAP"]
        return ["CHAP", "None"] if have_chap else ["None"]

    def _security(self, keys: dict[str, str]) -> list[tuple[str, str]]:
        answers: list[tuple[str, str]] = []
        chap_keys = {k: v for k, v in keys.items() if k in K.CHAP_KEYS}
        if "AuthMethod" in keys:
            if self.auth_method is not None:
                raise LoginFailure(LoginStatus.INITIATOR_ERROR, "AuthMethod negotiated twice")
            chosen = select_from_list(K.split_list(keys["AuthMethod"]), self._supported_methods())
            if chosen is None:
                # 6.2: the answer would be AuthMethod=Reject; the login cannot go on (LIO fails it too)
                raise LoginFailure(LoginStatus.AUTHENTICATION_FAILURE, "no acceptable AuthMethod")
            self.auth_method = chosen
            answers.append(("AuthMethod", chosen))
            if chosen == "CHAP":
                if not (self.credentials.userid and self.credentials.password):
                    raise LoginFailure(LoginStatus.AUTHENTICATION_FAILURE, "no CHAP credentials configured")
                self.chap = ChapAuthenticator(self.credentials, random_bytes=self.random_bytes)
        if chap_keys:
            if self.chap is None:
                raise LoginFailure(LoginStatus.AUTHENTICATION_FAILURE, "CHAP keys without AuthMethod=CHAP")
            answers.extend(self.chap.step(chap_keys).answers)
        return answers

    def _stage_done(self) -> bool:
        if self.stage is Stage.OPERATIONAL:
            return True
        if self.auth_method is None:
            return not self.auth_required  # AuthMethod's default is None (13.1 / 12)
        if self.auth_method == "CHAP":
            return self.chap is not None and self.chap.done
        return True

    def _auth_impossible(self) -> bool:
        """The initiator wants to leave the security stage but authentication is required and never began."""
        return self.auth_required and self.auth_method is None

    # ---- declarations the target makes itself

    def _declarations(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.session_type is not SessionType.NORMAL:
            return out
        leading = self.kind in (LoginKind.NEW_SESSION, LoginKind.SESSION_REINSTATEMENT)
        if not self.declared_identity and leading and self.tpg is not None:
            # 13.9: TargetPortalGroupTag in the first Login Response of the leading connection
            self.declared_identity = True
            out.append(("TargetPortalGroupTag", str(self.tpg.tag)))
        if not self.declared_alias and self.stage is Stage.OPERATIONAL and self.target is not None:
            self.declared_alias = True
            alias = target_alias(self.target)
            if alias:
                out.append(("TargetAlias", alias))
        return out

    # ---- emitting (with C-bit continuation of our own text) and finishing

    def _emit(self, req: LoginRequest, data: bytes, transit: bool, nsg: int) -> LoginStep:
        result = None
        if transit and nsg == Stage.FULL_FEATURE:
            result = self._finish(req)
        parts = textmod.split_text(data, LOGIN_MAX_SEGMENT)
        self._out_parts = parts[1:]
        self._out_final = (transit, nsg, result)
        if self._out_parts:
            return LoginStep(responses=[self._response(req, data=parts[0], cont=True, nsg=nsg)])
        return self._final_part(req, parts[0])

    def _emit_next(self, req: LoginRequest) -> LoginStep:
        part = self._out_parts.pop(0)
        if self._out_parts:
            return LoginStep(responses=[self._response(req, data=part, cont=True, nsg=self._out_final[1])])
        return self._final_part(req, part)

    def _final_part(self, req: LoginRequest, data: bytes) -> LoginStep:
        transit, nsg, result = self._out_final
        if not transit:
            return LoginStep(responses=[self._response(req, data=data, nsg=nsg)])
        tsih = result.tsih if result is not None else None
        resp = self._response(req, data=data, transit=True, nsg=nsg, tsih=tsih)
        self.stage = Stage(nsg)
        if result is None:
            return LoginStep(responses=[resp])
        self.done = True
        final = dataclasses.replace(result, next_statsn=self.statsn)
        return LoginStep(responses=[resp], complete=True, result=final)

    def _cmdsn_depth(self) -> int:
        if self.acl is not None and "cmdsn_depth" in self.acl.attributes:
            return max(1, attr_int(self.acl.attributes, "cmdsn_depth", DEFAULT_CMDSN_DEPTH))
        if self.tpg is not None and "default_cmdsn_depth" in self.tpg.attributes:
            return max(1, attr_int(self.tpg.attributes, "default_cmdsn_depth", DEFAULT_CMDSN_DEPTH))
        return max(1, attr_int(self.config.settings, "cmdsn_depth", DEFAULT_CMDSN_DEPTH))

    def _finish(self, req: LoginRequest) -> LoginResult:
        assert self.first is not None and self.negotiator is not None
        first = self.first
        target_name = self.target.wwn if self.target is not None else ""
        tpg_tag = self.tpg.tag if self.tpg is not None else 0
        alias = target_alias(self.target) if self.target is not None else ""
        if self.kind in (LoginKind.NEW_SESSION, LoginKind.SESSION_REINSTATEMENT):
            tsih = self.sessions.allocate_tsih()
            session_params = self.negotiator.session_params(
                initiator_name=self.initiator_name,
                target_name=target_name,
                tpg_tag=tpg_tag,
                isid=first.isid,
                tsih=tsih,
                target_alias=alias,
            )
        else:
            assert self.existing is not None
            tsih = self.existing.tsih
            session_params = self.existing.params
        auth = self.auth_method or "None"
        return LoginResult(
            session_type=self.session_type,
            kind=self.kind,
            initiator_name=self.initiator_name,
            initiator_alias=self.negotiator.values.get("InitiatorAlias", ""),
            isid=first.isid,
            tsih=tsih,
            cid=first.cid,
            target_name=target_name,
            tpg_tag=tpg_tag,
            target=self.target,
            tpg=self.tpg,
            acl=self.acl,
            dynamic_acl=self.dynamic_acl,
            session_params=session_params,
            connection_params=self.negotiator.connection_params(first.cid, auth_method=auth),
            existing=self.existing,
            exp_cmdsn=_mask32(req.cmdsn),
            cmdsn_depth=self._cmdsn_depth(),
            next_statsn=0,
            exp_statsn=self.last_exp_statsn,
            auth_method=auth,
            mutual_chap=bool(self.chap is not None and self.chap.mutual),
        )
