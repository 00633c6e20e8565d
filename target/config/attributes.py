"""LIO attribute names (configfs ``attrib/`` files) at each level of the tree, with their value ranges,
and the target-wide ``settings`` of the native format.

The names follow the Linux target's configfs (target_core_configfs.c ``sbc_attrib_attrs``,
iscsi_target_configfs.c TPG and node ACL attribs). Unknown names are reported as warnings by the
loaders (LIO grows attributes over time); a known name with a value out of range is an error.
"""

from __future__ import annotations

from collections.abc import Mapping

Range = tuple[int, int]

_BOOL: Range = (0, 1)
_U32: Range = (0, 2**32 - 1)

#: storage object (se_device) attributes. block_size is a StorageObjectConfig field, not an attribute.
STORAGE_OBJECT_ATTRIBUTES: Mapping[str, Range] = {
    "emulate_model_alias": _BOOL,
    "emulate_dpo": _BOOL,
    "emulate_fua_write": _BOOL,
    "emulate_fua_read": _BOOL,
    "emulate_write_cache": _BOOL,
    "emulate_ua_intlck_ctrl": (0, 2),  # SPC-4 7.5.7 UA_INTLCK_CTRL
    "emulate_tas": _BOOL,
    "emulate_tpu": _BOOL,
    "emulate_tpws": _BOOL,
    "emulate_caw": _BOOL,
    "emulate_3pc": _BOOL,
    "emulate_pr": _BOOL,
    "emulate_rsoc": _BOOL,
    "pi_prot_type": (0, 3),
    "hw_pi_prot_type": (0, 3),
    "pi_prot_format": _BOOL,
    "pi_prot_verify": _BOOL,
    "enforce_pr_isids": _BOOL,
    "is_nonrot": _BOOL,
    "emulate_rest_reord": _BOOL,
    "force_pr_aptpl": _BOOL,
    "hw_block_size": _U32,
    "hw_max_sectors": _U32,
    "optimal_sectors": _U32,
    "hw_queue_depth": _U32,
    "queue_depth": (1, 2**32 - 1),
    "max_unmap_lba_count": _U32,
    "max_unmap_block_desc_count": _U32,
    "unmap_granularity": _U32,
    "unmap_granularity_alignment": _U32,
    "unmap_zeroes_data": _BOOL,
    "max_write_same_len": _U32,
    "alua_support": _BOOL,
    "pgr_support": _BOOL,
    "submit_type": (0, 2),
}

#: iSCSI TPG attributes (lio_target_tpg_attrib_attrs)
TPG_ATTRIBUTES: Mapping[str, Range] = {
    "authentication": _BOOL,
    "login_timeout": (1, 30),
    "netif_timeout": (2, 15),
    "generate_node_acls": _BOOL,
    "default_cmdsn_depth": (1, 4096),
    "cache_dynamic_acls": _BOOL,
    "demo_mode_write_protect": _BOOL,
    "prod_mode_write_protect": _BOOL,
    "demo_mode_discovery": _BOOL,
    "default_erl": (0, 2),
    "t10_pi": _BOOL,
    "fabric_prot_type": (0, 3),
    "tpg_enabled_sendtargets": _BOOL,
    "login_keys_workaround": _BOOL,
}

#: iSCSI node ACL attributes (lio_target_nacl_attrib_attrs)
ACL_ATTRIBUTES: Mapping[str, Range] = {
    "dataout_timeout": (2, 60),
    "dataout_timeout_retries": (1, 15),
    "default_erl": (0, 2),
    "nopin_timeout": (1, 3600),
    "nopin_response_timeout": (1, 3600),
    "random_datain_pdu_offsets": _BOOL,
    "random_datain_seq_offsets": _BOOL,
    "random_r2t_offsets": _BOOL,
    "authentication": (-1, 1),  # -1: inherit the TPG's setting
    "cmdsn_depth": (1, 4096),  # LIO keeps it beside attrib/ (acls/<iqn>/cmdsn_depth); sanlab reads it here
}

#: native-format target-wide settings: name -> (min, max). Others read them from Config.settings (the
#: runtime reads the *_s ones with float(), so "0.5" is a valid value; non-integer numbers are kept as text).
SETTINGS: Mapping[str, Range] = {
    "nopin_interval_s": (0, 3600),  # 0 disables target-initiated NOP-In pings
    "nopin_timeout_s": (0, 3600),
    "shutdown_grace_s": (0, 3600),  # how long to wait for initiators to log out at shutdown
    "login_timeout_s": (0, 3600),
    "max_sessions": (1, 65535),
    "cmdsn_depth": (1, 4096),
}
#: settings whose values may be fractional
FRACTIONAL_SETTINGS = frozenset(name for name in SETTINGS if name.endswith("_s"))


def coerce_number(value: object) -> float | None:
    """A setting's value as a number: int, float or a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def coerce_int(value: object) -> int | None:
    """LIO writes attributes as ints, but values read back as strings happen; accept decimal strings."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None
