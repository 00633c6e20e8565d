"""sanlab: a userspace iSCSI target (RFC 7143, SPC-4, SBC-3)."""
